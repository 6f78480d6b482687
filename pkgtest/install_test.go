package pkgtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/testbin"
	"github.com/ringfence/ringfence/internal/testfiles"
)

// rootfs returns the Debian root to boot (RINGFENCE_NSPAWN_ROOT, made by
// pkgtest/rootfs.sh), or skips: without it, or without root and
// systemd-nspawn, or fails when RINGFENCE_REQUIRE_NSPAWN=1 (make
// test-packages sets it, so that a missing tool cannot pass silently).
func rootfs(t *testing.T) string {
	t.Helper()
	base, msg := os.Getenv("RINGFENCE_NSPAWN_ROOT"), ""
	switch {
	case base == "":
		msg = "RINGFENCE_NSPAWN_ROOT is not set"
	case os.Getuid() != 0:
		msg = "not root (systemd-nspawn needs it)"
	default:
		for _, tool := range []string{"systemd-nspawn", "nsenter", "dpkg-deb"} {
			if _, err := exec.LookPath(tool); err != nil {
				msg = "no " + tool
			}
		}
		if _, err := os.Stat(filepath.Join(base, "usr/lib/systemd/systemd")); msg == "" && err != nil {
			msg = fmt.Sprintf("%s holds no systemd (%v)", base, err)
		}
	}
	if msg != "" {
		msg += "; 'make test-packages' makes the root with debootstrap ('make deps' installs debootstrap and systemd-container) and runs this test"
		if os.Getenv("RINGFENCE_REQUIRE_NSPAWN") == "1" {
			t.Fatal(msg + "; RINGFENCE_REQUIRE_NSPAWN=1 forbids skipping")
		}
		t.Skip(msg)
	}
	return base
}

// server is a real ringfence-server serve on the host's loopback, with a
// repository whose plan gives every host good-ipc-1001 on channel 291.
type server struct {
	url  string
	root string // the repository's metadata/root.json: the vendor root
	cmd  *exec.Cmd
}

func startServer(t *testing.T) *server {
	t.Helper()
	bin := testbin.Exe(testbin.Build(t, "../cmd/ringfence-server"), "../cmd/ringfence-server")
	dir := t.TempDir()
	repo, keys, state := filepath.Join(dir, "repo"), filepath.Join(dir, "keys"), filepath.Join(dir, "state")
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		require.NoError(t, err, "ringfence-server %s:\n%s", strings.Join(args, " "), out)
	}
	run("repo", "init", "--repo", repo, "--keys", keys)
	run("publish", "--repo", repo, "--keys", keys, "--channel", "291", filepath.Join(testfiles.Dir(), "channels", "good-ipc-1001.rfch"))
	plan := filepath.Join(dir, "plan.json")
	require.NoError(t, os.WriteFile(plan, []byte(`{"format":"ringfence-rollout/v1","channel":291,"stages":[{"name":"fleet","percent":100,"version":1001}]}`), 0o644))
	run("rollout", "set", "--repo", repo, "--keys", keys, "--channel", "291", "--plan", plan)

	s := &server{root: filepath.Join(repo, "metadata", "root.json")}
	s.cmd = exec.Command(bin, "serve", "--repo", repo, "--keys", keys, "--state", state, "--addr", "127.0.0.1:0")
	stdout, err := s.cmd.StdoutPipe()
	require.NoError(t, err)
	logs := &strings.Builder{}
	s.cmd.Stderr = logs
	require.NoError(t, s.cmd.Start())
	t.Cleanup(func() { _ = s.cmd.Process.Kill(); _ = s.cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if u, ok := strings.CutPrefix(lines.Text(), "serving "+repo+" on "); ok {
			s.url = u
			break
		}
	}
	require.NotEmpty(t, s.url, "serve prints where it serves; logs:\n%s", logs)
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return s
}

// buildDeb is 'make dist' for amd64 with the server's root and URL as the
// vendor's: the .deb of ringfenced.
func buildDeb(t *testing.T, s *server) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command("go", "run", "./dist", "--out", out, "--arch", "amd64", "--vendor-root", s.root, "--server-url", s.url)
	cmd.Dir = ".."
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "make dist:\n%s", b)
	debs, err := filepath.Glob(filepath.Join(out, "ringfenced_*_amd64.deb"))
	require.NoError(t, err)
	require.Len(t, debs, 1, "make dist wrote:\n%s", b)
	return debs[0]
}

// status is what `ringfence status --json` says of the channels.
type status struct {
	Channels []struct {
		Channel uint32 `json:"channel"`
		Active  string `json:"active"` // the slot
		Slots   []struct {
			Slot       string `json:"slot"`
			State      string `json:"state"`
			Version    uint32 `json:"version"`
			Breadcrumb string `json:"breadcrumb"`
			Verified   bool   `json:"verified"`
		} `json:"slots"`
	} `json:"channels"`
}

// TestDebInstall: the vendor's .deb, installed with dpkg into Debian with
// systemd as PID 1, starts the hardened unit; the agent runs content it
// fetched from a real rollout server with no hand edits (the vendor's root
// and URL are in the binary); systemd restarts a killed daemon; remove
// keeps the root and the configuration, purge takes both.
func TestDebInstall(t *testing.T) {
	base := rootfs(t)
	s := startServer(t)
	deb := buildDeb(t, s)
	c := boot(t, base)

	data, err := os.ReadFile(deb)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(c.dir, "root", "ringfenced.deb"), data, 0o644))
	out := c.must("dpkg", "-i", "/root/ringfenced.deb")
	t.Logf("dpkg -i:\n%s", out)

	// The hardened unit, enabled and active.
	p := c.show("ringfenced", "ActiveState", "UnitFileState", "ProtectSystem", "NoNewPrivileges", "ProtectHome", "Restart", "ExecStart")
	require.Equal(t, "active", p["ActiveState"], "%v", p)
	require.Equal(t, "enabled", p["UnitFileState"])
	require.Equal(t, "strict", p["ProtectSystem"])
	require.Equal(t, "yes", p["NoNewPrivileges"])
	require.Equal(t, "yes", p["ProtectHome"])
	require.Equal(t, "on-failure", p["Restart"])
	require.Contains(t, p["ExecStart"], "/usr/bin/ringfenced")

	// The agent runs the content the server's plan gives, as the boot
	// record says: fetched and checked by the packaged daemon.
	c.until("channel 291 running version 1001", 90*time.Second, func() (bool, string) {
		out, err := c.exec("ringfence", "status", "--root", "/var/lib/ringfence", "--json")
		if err != nil {
			return false, out
		}
		var st status
		if json.Unmarshal([]byte(out), &st) != nil {
			return false, out
		}
		for _, ch := range st.Channels {
			if ch.Channel != 291 {
				continue
			}
			for _, sl := range ch.Slots {
				// LOADED: the agent's loader loaded the verified bytes.
				if sl.Slot == ch.Active && sl.Version == 1001 && sl.Verified && sl.Breadcrumb == "LOADED" && (sl.State == "TRIAL" || sl.State == "GOOD") {
					return true, out
				}
			}
		}
		return false, out
	})
	agents := c.must("sh", "-c", `for p in /proc/[0-9]*; do tr '\0' ' ' < "$p/cmdline"; echo; done 2>/dev/null`)
	require.Contains(t, agents, "ringfenced agent", "the daemon runs the reference agent")

	// A killed daemon comes back by systemd's Restart=on-failure.
	before := c.show("ringfenced", "MainPID", "NRestarts")
	c.must("systemctl", "kill", "--kill-whom=main", "--signal=KILL", "ringfenced")
	c.until("ringfenced restarted by systemd", 60*time.Second, func() (bool, string) {
		now := c.show("ringfenced", "MainPID", "NRestarts", "ActiveState")
		return now["ActiveState"] == "active" && now["MainPID"] != "0" && now["MainPID"] != before["MainPID"] && now["NRestarts"] != before["NRestarts"],
			fmt.Sprintf("%v (before %v)", now, before)
	})

	// Remove: the service and the binaries go; the root (content, boot
	// record, host key) and the configuration stay.
	t.Logf("dpkg -r:\n%s", c.must("dpkg", "-r", "ringfenced"))
	gone, _ := c.exec("systemctl", "is-active", "ringfenced")
	require.NotEqual(t, "active", strings.TrimSpace(gone))
	_, err = c.file("usr/bin/ringfenced")
	require.True(t, os.IsNotExist(err), "the binary is removed")
	for _, keep := range []string{"var/lib/ringfence/channels/291/bootrecord", "etc/ringfence/ringfenced.toml"} {
		_, err = c.file(keep)
		require.NoError(t, err, "remove keeps /%s", keep)
	}
	ids, err := filepath.Glob(filepath.Join(c.dir, "var/lib/ringfence/identity/*"))
	require.NoError(t, err)
	require.NotEmpty(t, ids, "remove keeps the host key")

	// Purge: nothing of it stays.
	t.Logf("dpkg -P:\n%s", c.must("dpkg", "-P", "ringfenced"))
	for _, gone := range []string{"var/lib/ringfence", "etc/ringfence"} {
		_, err = c.file(gone)
		require.True(t, os.IsNotExist(err), "purge removes /%s (%v)", gone, err)
	}
}

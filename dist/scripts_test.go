package main

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// host is a stand-in for the machine the maintainer scripts run on: the
// paths they touch point into a temporary directory, and systemctl is a stub
// that logs its calls and keeps enable/disable as links in the wants
// directory, as systemd does.
type host struct {
	t       *testing.T
	dir     string
	vals    map[string]string
	log     string // the stub's log: one call a line
	systemd bool   // whether "systemd runs" (the RUNSYSTEMD directory exists)
}

const systemctlStub = `#!/bin/sh
echo "$*" >> "$STUB_LOG"
unit=
for a in "$@"; do case "$a" in *.service) unit=$a ;; esac; done
case "$1" in
enable) ln -sf "/usr/lib/systemd/system/$unit" "$STUB_WANTS/$unit" ;;
disable) rm -f "$STUB_WANTS/$unit" ;;
is-enabled) [ -L "$STUB_WANTS/$unit" ] ;;
esac
`

func newHost(t *testing.T, systemd bool) *host {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the maintainer scripts run as root (they chown to root): run the tests as root (make test does in CI)")
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	h := &host{t: t, dir: dir, log: filepath.Join(dir, "systemctl.log"), systemd: systemd, vals: maps.Clone(installPaths)}
	for k, p := range map[string]string{
		"ROOT": "var/lib/ringfence", "CONFDIR": "etc/ringfence", "SSTATE": "var/lib/ringfence-server",
		"SCONFDIR": "etc/ringfence-server", "RUNSYSTEMD": "run/systemd/system", "WANTS": "etc/systemd/system/multi-user.target.wants",
	} {
		h.vals[k] = filepath.Join(dir, p)
	}
	h.vals["CONFIG"] = filepath.Join(h.vals["CONFDIR"], "ringfenced.toml")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bin", "systemctl"), []byte(systemctlStub), 0o755))
	require.NoError(t, os.MkdirAll(h.vals["WANTS"], 0o755))
	require.NoError(t, os.MkdirAll(h.vals["CONFDIR"], 0o755))
	require.NoError(t, os.WriteFile(h.vals["CONFIG"], []byte("# conffile\n"), 0o644))
	require.NoError(t, os.MkdirAll(h.vals["SCONFDIR"], 0o755))
	if systemd {
		require.NoError(t, os.MkdirAll(h.vals["RUNSYSTEMD"], 0o755))
	}
	return h
}

// run runs the package's script (as named in dist/scripts) with args, and
// returns its output and the systemctl calls it made.
func (h *host) run(script string, args ...string) (out string, calls []string) {
	h.t.Helper()
	body, err := renderAsset("scripts/"+script, h.vals)
	require.NoError(h.t, err)
	p := filepath.Join(h.dir, script)
	require.NoError(h.t, os.WriteFile(p, body, 0o755))
	require.NoError(h.t, os.WriteFile(h.log, nil, 0o644))
	cmd := exec.Command("sh", append([]string{p}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Join(h.dir, "bin")+":"+os.Getenv("PATH"), "STUB_LOG="+h.log, "STUB_WANTS="+h.vals["WANTS"])
	b, err := cmd.CombinedOutput()
	require.NoError(h.t, err, "%s %v: %s", script, args, b)
	logged, err := os.ReadFile(h.log)
	require.NoError(h.t, err)
	if s := strings.TrimSpace(string(logged)); s != "" {
		calls = strings.Split(s, "\n")
	}
	return string(b), calls
}

func (h *host) mode(key string) os.FileMode {
	h.t.Helper()
	fi, err := os.Stat(h.vals[key])
	require.NoError(h.t, err)
	return fi.Mode().Perm()
}

func (h *host) exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// TestDebScriptsRingfenced walks the deb's maintainer scripts through
// install, upgrade, remove, reinstall and purge, as dpkg calls them.
func TestDebScriptsRingfenced(t *testing.T) {
	h := newHost(t, true)
	link := filepath.Join(h.vals["WANTS"], hostUnit)

	out, calls := h.run("ringfenced.postinst", "configure", "")
	require.Equal(t, []string{"enable ringfenced.service", "daemon-reload", "start ringfenced.service"}, calls, "a first install enables and starts the daemon")
	require.Contains(t, out, "enabled and started")
	require.Equal(t, os.FileMode(0o700), h.mode("ROOT"), "the root is private to root")
	require.True(t, h.exists(link))
	require.NoError(t, os.WriteFile(filepath.Join(h.vals["ROOT"], "state.db"), []byte("x"), 0o600))

	// An upgrade: the old prerm stops it, the new postinst starts it again.
	_, calls = h.run("ringfenced.prerm", "upgrade", "1.2.4")
	require.Equal(t, []string{"stop ringfenced.service"}, calls)
	_, calls = h.run("ringfenced.postinst", "configure", "1.2.3")
	require.Equal(t, []string{"daemon-reload", "is-enabled --quiet ringfenced.service", "restart ringfenced.service"}, calls)

	// An upgrade where the admin disabled it: it stays down.
	require.NoError(t, os.Remove(link))
	_, calls = h.run("ringfenced.postinst", "configure", "1.2.3")
	require.Equal(t, []string{"daemon-reload", "is-enabled --quiet ringfenced.service"}, calls, "an upgrade does not enable what the admin disabled")
	_, calls = h.run("ringfenced.postinst", "configure", "")
	require.Contains(t, calls, "start ringfenced.service")

	// Remove keeps the root and the configuration.
	_, calls = h.run("ringfenced.prerm", "remove")
	require.Equal(t, []string{"stop ringfenced.service"}, calls)
	out, calls = h.run("ringfenced.postrm", "remove")
	require.Equal(t, []string{"daemon-reload"}, calls)
	require.Contains(t, out, "kept "+h.vals["ROOT"])
	require.True(t, h.exists(filepath.Join(h.vals["ROOT"], "state.db")), "remove keeps the root")
	require.True(t, h.exists(h.vals["CONFIG"]))

	// Reinstalled after a remove: dpkg passes the old version; the unit is
	// still enabled, so it starts.
	_, calls = h.run("ringfenced.postinst", "configure", "1.2.3")
	require.Contains(t, calls, "restart ringfenced.service")

	// Purge deletes the root, the configuration and the enable link.
	_, _ = h.run("ringfenced.prerm", "remove")
	_, _ = h.run("ringfenced.postrm", "remove")
	_, calls = h.run("ringfenced.postrm", "purge")
	require.Equal(t, []string{"daemon-reload"}, calls)
	require.False(t, h.exists(h.vals["ROOT"]), "purge deletes the root")
	require.False(t, h.exists(h.vals["CONFDIR"]))
	require.False(t, h.exists(link))
}

// TestDebScriptsWithoutSystemd: where systemd does not run (a chroot, an
// image being built), the first install enables the unit for the next boot,
// starts nothing, and says how to run the daemon.
func TestDebScriptsWithoutSystemd(t *testing.T) {
	h := newHost(t, false)
	out, calls := h.run("ringfenced.postinst", "configure", "")
	require.Equal(t, []string{"enable ringfenced.service"}, calls)
	require.Contains(t, out, "systemd is not running here")
	require.Contains(t, out, "/usr/bin/ringfenced run --config "+h.vals["CONFIG"])
	_, calls = h.run("ringfenced.prerm", "remove")
	require.Empty(t, calls)
	_, calls = h.run("ringfenced.postrm", "purge")
	require.Empty(t, calls)
	require.False(t, h.exists(h.vals["ROOT"]))
}

// TestRPMScriptsRingfenced: %post, %preun and %postun with the counts rpm
// passes ($1) on install, upgrade and erase.
func TestRPMScriptsRingfenced(t *testing.T) {
	h := newHost(t, true)
	_, calls := h.run("ringfenced.rpm-post", "1")
	require.Equal(t, []string{"enable ringfenced.service", "daemon-reload", "start ringfenced.service"}, calls)
	require.Equal(t, os.FileMode(0o700), h.mode("ROOT"))
	require.NoError(t, os.WriteFile(filepath.Join(h.vals["ROOT"], "state.db"), []byte("x"), 0o600))

	// An upgrade: new %post (2), old %preun (1), old %postun (1).
	_, calls = h.run("ringfenced.rpm-post", "2")
	require.Empty(t, calls, "an upgrade's %post does not enable or start")
	_, calls = h.run("ringfenced.rpm-preun", "1")
	require.Empty(t, calls, "an upgrade leaves the daemon running")
	_, calls = h.run("ringfenced.rpm-postun", "1")
	require.Equal(t, []string{"daemon-reload", "try-restart ringfenced.service"}, calls, "then moves it onto the new binary")

	// An erase stops and disables it and keeps the root.
	_, calls = h.run("ringfenced.rpm-preun", "0")
	require.Equal(t, []string{"stop ringfenced.service", "disable ringfenced.service"}, calls)
	out, calls := h.run("ringfenced.rpm-postun", "0")
	require.Equal(t, []string{"daemon-reload"}, calls)
	require.Contains(t, out, "kept "+h.vals["ROOT"])
	require.True(t, h.exists(filepath.Join(h.vals["ROOT"], "state.db")), "an erase keeps the root")
	require.False(t, h.exists(filepath.Join(h.vals["WANTS"], hostUnit)))
}

// TestServerScripts: ringfence-server's package never enables the service
// (it needs a repository and keys first) and never deletes its state, which
// holds the signing keys, not even on purge.
func TestServerScripts(t *testing.T) {
	h := newHost(t, true)
	out, calls := h.run("ringfence-server.postinst", "configure", "")
	require.Equal(t, []string{"daemon-reload"}, calls, "installed, not enabled, not started")
	require.Contains(t, out, "ringfence-server repo init --repo "+h.vals["SSTATE"]+"/repo --keys "+h.vals["SSTATE"]+"/keys")
	require.Contains(t, out, "systemctl enable --now ringfence-server.service")
	require.Equal(t, os.FileMode(0o700), h.mode("SSTATE"))

	// Enabled by the admin, then upgraded: started again.
	link := filepath.Join(h.vals["WANTS"], serverUnit)
	require.NoError(t, os.Symlink("/usr/lib/systemd/system/"+serverUnit, link))
	_, calls = h.run("ringfence-server.prerm", "upgrade", "1.2.4")
	require.Equal(t, []string{"stop ringfence-server.service"}, calls)
	_, calls = h.run("ringfence-server.postinst", "configure", "1.2.3")
	require.Equal(t, []string{"daemon-reload", "is-enabled --quiet ringfence-server.service", "restart ringfence-server.service"}, calls)

	require.NoError(t, os.MkdirAll(filepath.Join(h.vals["SSTATE"], "keys"), 0o700))
	out, _ = h.run("ringfence-server.postrm", "purge")
	require.Contains(t, out, "kept "+h.vals["SSTATE"])
	require.True(t, h.exists(filepath.Join(h.vals["SSTATE"], "keys")), "purge keeps the signing keys")
	require.False(t, h.exists(h.vals["SCONFDIR"]))
	require.False(t, h.exists(link))

	_, calls = h.run("ringfence-server.rpm-post", "1")
	require.Equal(t, []string{"daemon-reload"}, calls)
	_, calls = h.run("ringfence-server.rpm-preun", "0")
	require.Equal(t, []string{"stop ringfence-server.service", "disable ringfence-server.service"}, calls)
	_, calls = h.run("ringfence-server.rpm-postun", "1")
	require.Equal(t, []string{"daemon-reload", "try-restart ringfence-server.service"}, calls)
}

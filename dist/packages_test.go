package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/vendorbuild"
)

// TestReproducible: a second build with the same inputs, into another
// directory and through another staging directory, gives byte-identical
// packages and SHA256SUMS.
func TestReproducible(t *testing.T) {
	f := built(t)
	o := f.opts
	o.Out = filepath.Join(t.TempDir(), "out2")
	res, err := Build(context.Background(), o)
	require.NoError(t, err)
	names := func(as []Artifact) (n []string) {
		for _, a := range as {
			n = append(n, a.Name)
		}
		return n
	}
	want := []string{
		sumsFile,
		"ringfence-server-" + fixtureVersion + "-1.x86_64.rpm",
		"ringfence-server_" + fixtureVersion + "-1_amd64.deb",
		"ringfenced-" + fixtureVersion + "-1.x86_64.rpm",
		"ringfenced_" + fixtureVersion + "-1_amd64.deb",
	}
	_, wixl := exec.LookPath("wixl")
	_, msibuild := exec.LookPath("msibuild")
	if wixl == nil && msibuild == nil { // the Windows installer, where it can be built
		want = append(want, "ringfenced-"+fixtureVersion+"-x64.msi")
	} else {
		t.Log("SKIPPED the .msi in the reproducibility check: no wixl or msibuild ('make deps' installs wixl and msitools)")
	}
	require.Equal(t, sorted(want), sorted(names(res.Artifacts)), "each package named with its version and arch")
	require.Equal(t, f.res.Artifacts, res.Artifacts, "two builds, the same SHA-256 for every artifact")
	for _, a := range res.Artifacts {
		one, err := os.ReadFile(filepath.Join(f.opts.Out, a.Name))
		require.NoError(t, err)
		two, err := os.ReadFile(filepath.Join(o.Out, a.Name))
		require.NoError(t, err)
		require.True(t, slices.Equal(one, two), "%s differs between two builds", a.Name)
	}
	sums, err := os.ReadFile(filepath.Join(o.Out, sumsFile))
	require.NoError(t, err)
	require.Len(t, strings.Split(strings.TrimSpace(string(sums)), "\n"), len(want)-1, "SHA256SUMS lists every package")
	if _, err := exec.LookPath("sha256sum"); err == nil {
		cmd := exec.Command("sha256sum", "-c", sumsFile)
		cmd.Dir = o.Out
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
}

func sorted(s []string) []string { slices.Sort(s); return s }

// TestDeb reads the .debs back and checks what dpkg would install: files,
// modes, owners, mtimes, conffiles, the maintainer scripts, the unit and a
// configuration that works as shipped.
func TestDeb(t *testing.T) {
	f := built(t)
	d := readDeb(t, f.files["ringfenced.deb"])
	require.Equal(t, []string{"debian-binary", "control.tar.gz", "data.tar.gz"}, d.names())
	require.Equal(t, "2.0\n", string(d.members[0].body))
	control := string(d.control["./control"].body)
	for _, want := range []string{"Package: ringfenced\n", "Version: " + fixtureVersion + "-1\n", "Architecture: amd64\n", "Section: admin\n"} {
		require.Contains(t, control, want)
	}
	require.Equal(t, hostConfig+"\n", string(d.control["./conffiles"].body), "the configuration is a conffile: upgrades keep local edits")

	type want struct {
		mode int64
		dir  bool
	}
	for name, w := range map[string]want{
		"./usr/bin/ringfenced":                        {0o755, false},
		"./usr/bin/ringfence":                         {0o755, false},
		"./usr/lib/systemd/system/ringfenced.service": {0o644, false},
		"./etc/ringfence/":                            {0o755, true},
		"./etc/ringfence/ringfenced.toml":             {0o644, false},
		"./var/lib/ringfence/":                        {0o700, true},
		"./usr/share/doc/ringfenced/recovery.md":      {0o644, false},
	} {
		e, ok := d.data[name]
		require.True(t, ok, "%s is not in the package; it holds %v", name, d.order)
		require.Equal(t, w.mode, e.hdr.Mode&0o7777, "%s mode", name)
		require.Equal(t, w.dir, e.hdr.Typeflag == '5', "%s type", name)
	}
	for _, tree := range []map[string]tarEnt{d.data, d.control} {
		for name, e := range tree {
			require.Equal(t, int64(fixtureEpoch), e.hdr.ModTime.Unix(), "%s mtime is SOURCE_DATE_EPOCH", name)
			require.Zero(t, e.hdr.Uid, name)
			require.Zero(t, e.hdr.Gid, name)
		}
	}
	for _, m := range d.members {
		require.Equal(t, int64(fixtureEpoch), m.mtime, m.name)
	}
	require.True(t, slices.IsSorted(d.order), "files in sorted order: %v", d.order)

	unit, err := hostconfig.RenderSystemdUnit(hostconfig.DefaultRoot, "/usr/bin/ringfenced", []string{"run", "--config", hostconfig.DefaultPath})
	require.NoError(t, err)
	require.Equal(t, unit, string(d.data["./usr/lib/systemd/system/ringfenced.service"].body), "the unit 'ringfenced install' writes, for the packaged paths")
	require.Contains(t, unit, `ExecStart=/usr/bin/ringfenced "run" "--config" "/etc/ringfence/ringfenced.toml"`)

	conf := d.data["./etc/ringfence/ringfenced.toml"].body
	require.NotContains(t, string(conf), f.srv.URL, "the vendor's values are in the binary, not the conffile")
	checkShippedConfig(t, conf)

	for _, s := range []string{"./postinst", "./prerm", "./postrm"} {
		e, ok := d.control[s]
		require.True(t, ok, "no %s in the control archive", s)
		require.Equal(t, int64(0o755), e.hdr.Mode&0o7777, s)
		require.True(t, strings.HasPrefix(string(e.body), "#!/bin/sh\n"), s)
		shSyntax(t, s, e.body)
	}
	require.Contains(t, string(d.control["./postinst"].body), "systemctl enable")
	require.Contains(t, string(d.control["./postrm"].body), "rm -rf /var/lib/ringfence")

	s := readDeb(t, f.files["ringfence-server.deb"])
	require.Equal(t, serverConfDir+"/serve.env\n", string(s.control["./conffiles"].body))
	require.Equal(t, int64(0o700), s.data["./var/lib/ringfence-server/"].hdr.Mode&0o7777)
	require.Equal(t, int64(0o755), s.data["./usr/bin/ringfence-server"].hdr.Mode&0o7777)
	su := string(s.data["./usr/lib/systemd/system/ringfence-server.service"].body)
	require.Contains(t, su, "ExecStart=/usr/bin/ringfence-server serve --repo /var/lib/ringfence-server/repo --keys /var/lib/ringfence-server/keys --state /var/lib/ringfence-server/state $SERVE_FLAGS\n")
	require.NotContains(t, su, "@")
	for _, sc := range []string{"./postinst", "./prerm", "./postrm"} {
		shSyntax(t, sc, s.control[sc].body)
	}

	// dpkg's own reading, where it is installed.
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Log("dpkg-deb is not installed: the .debs were read with Go only")
		return
	}
	for _, p := range []string{f.files["ringfenced.deb"], f.files["ringfence-server.deb"]} {
		out, err := exec.Command("dpkg-deb", "--info", p).CombinedOutput()
		require.NoError(t, err, "%s", out)
		out, err = exec.Command("dpkg-deb", "--contents", p).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	out, err := exec.Command("dpkg-deb", "--contents", f.files["ringfenced.deb"]).CombinedOutput()
	require.NoError(t, err)
	require.Regexp(t, `(?m)^drwx------ root/root +0 2025-12-01 00:00 \./var/lib/ringfence/$`, string(out))
	require.Regexp(t, `(?m)^-rwxr-xr-x root/root +\d+ 2025-12-01 00:00 \./usr/bin/ringfenced$`, string(out))
}

// checkShippedConfig parses the packaged configuration as ringfenced would.
// This test binary embeds no vendor values, so it adds the two keys a
// vendor build fills in; the rest must parse as shipped.
func checkShippedConfig(t *testing.T, conf []byte) {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "root.json"), []byte("{}"), 0o600))
	c, err := hostconfig.Parse(append(conf, []byte("\nrepository = \"https://r.example.com/\"\ntrusted_root = \"root.json\"\n")...), dir)
	require.NoError(t, err, "the packaged configuration:\n%s", conf)
	require.Equal(t, hostconfig.DefaultRoot, c.Root)
	require.Equal(t, []uint32{DefaultChannel}, c.Followed(), "the manifests in the tests name no channels")
}

func shSyntax(t *testing.T, name string, script []byte) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "script")
	require.NoError(t, os.WriteFile(p, script, 0o700))
	out, err := exec.Command("sh", "-n", p).CombinedOutput()
	require.NoError(t, err, "%s: sh -n: %s", name, out)
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}

// TestRPM checks the .rpms with rpm's own tools: the file list, modes and
// owners, the configuration file flags, the scriptlets, the header and the
// digests.
func TestRPM(t *testing.T) {
	f := built(t)
	if _, err := exec.LookPath("rpm"); err != nil {
		t.Skip("rpm is not installed: the .rpms were built but not checked with rpm's tools (apt-get install rpm)")
	}
	rpm := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("rpm", args...).CombinedOutput()
		require.NoError(t, err, "rpm %s: %s", strings.Join(args, " "), out)
		return string(out)
	}
	p := f.files["ringfenced.rpm"]
	require.Equal(t, strings.Join([]string{
		"/etc/ringfence", "/etc/ringfence/ringfenced.toml", "/usr/bin/ringfence", "/usr/bin/ringfenced",
		"/usr/lib/systemd/system/ringfenced.service", "/usr/share/doc/ringfenced",
		"/usr/share/doc/ringfenced/recovery.md", "/usr/share/doc/ringfenced/ringfenced.md", "/var/lib/ringfence",
	}, "\n")+"\n", rpm("-qpl", p))
	require.Equal(t, "/etc/ringfence/ringfenced.toml\n", rpm("-qpc", p))
	files := rpm("-qp", "--qf", `[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEMTIMES} %{FILEFLAGS:fflags} %{FILENAMES}\n]`, p)
	for _, want := range []string{
		"-rwxr-xr-x root root 1764547200  /usr/bin/ringfenced\n",
		"-rwxr-xr-x root root 1764547200  /usr/bin/ringfence\n",
		"drwx------ root root 1764547200  /var/lib/ringfence\n",
		"-rw-r--r-- root root 1764547200 cn /etc/ringfence/ringfenced.toml\n", // %config(noreplace)
		"-rw-r--r-- root root 1764547200  /usr/lib/systemd/system/ringfenced.service\n",
	} {
		require.Contains(t, files, want)
	}
	require.Equal(t, "ringfenced "+fixtureVersion+" 1 x86_64 ringfence-dist 1764547200",
		rpm("-qp", "--qf", "%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{BUILDHOST} %{BUILDTIME}", p))
	scripts := rpm("-qp", "--scripts", p)
	for _, want := range []string{
		"postinstall scriptlet (using /bin/sh):", "preuninstall scriptlet (using /bin/sh):", "postuninstall scriptlet (using /bin/sh):",
		`if [ "$1" -eq 1 ]; then`, "systemctl enable", "systemctl disable ringfenced.service", "systemctl try-restart ringfenced.service",
		"chmod 0700", "root=/var/lib/ringfence",
	} {
		require.Contains(t, scripts, want)
	}
	require.Contains(t, rpm("-K", "--nosignature", p), "digests OK")

	s := f.files["ringfence-server.rpm"]
	require.Equal(t, "/etc/ringfence-server/serve.env\n", rpm("-qpc", s))
	require.Contains(t, rpm("-qpl", s), "/usr/lib/systemd/system/ringfence-server.service\n")
	require.Contains(t, rpm("-qp", "--qf", `[%{FILEMODES:perms} %{FILENAMES}\n]`, s), "drwx------ /var/lib/ringfence-server\n")
	require.Contains(t, rpm("-qp", "--scripts", s), "postinstall scriptlet")
	require.Contains(t, rpm("-K", "--nosignature", s), "digests OK")
}

// TestPackagedDaemonUsesVendorValues runs the packaged ringfenced with the
// packaged configuration, changed only to put its root in a temporary
// directory and to send telemetry every second: with no repository,
// trusted root or endpoint in the file, it refreshes TUF from the vendor's
// server with the embedded root (it gets as far as targets.json, which only
// a timestamp and snapshot signed by that root's keys lead to) and sends
// its telemetry there.
func TestPackagedDaemonUsesVendorValues(t *testing.T) {
	f := built(t)
	d := readDeb(t, f.files["ringfenced.deb"])
	dir := t.TempDir()
	bin := filepath.Join(dir, "ringfenced")
	require.NoError(t, os.WriteFile(bin, d.data["./usr/bin/ringfenced"].body, 0o755))

	out, err := exec.Command(bin, "version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "ringfenced "+fixtureVersion+" (")
	require.Contains(t, string(out), "embedded root.json, sha256 "+vendorbuild.SHA256(mustRead(t, f.opts.VendorRoot)))
	require.Contains(t, string(out), "server:        "+f.srv.URL+" ")
	require.Contains(t, string(out), "embedded manifest, sensor 7.12, sha256 "+vendorbuild.SHA256(mustRead(t, f.caps)))

	conf := string(d.data["./etc/ringfence/ringfenced.toml"].body)
	root := filepath.Join(dir, "root")
	require.Contains(t, conf, "\nroot = \""+hostconfig.DefaultRoot+"\"\n")
	conf = strings.Replace(conf, "\nroot = \""+hostconfig.DefaultRoot+"\"\n", "\nroot = \""+root+"\"\n", 1)
	cfg := filepath.Join(dir, "ringfenced.toml")
	require.NoError(t, os.WriteFile(cfg, []byte(conf+"\n[telemetry]\ninterval = \"1s\"\n"), 0o600))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.Command(bin, "run", "--config", cfg)
	logf, err := os.Create(filepath.Join(dir, "daemon.log"))
	require.NoError(t, err)
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // the daemon stops its agent
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	for _, w := range []struct {
		what  string
		match func(string) bool
	}{
		{"a TUF refresh that reached targets.json", func(s string) bool {
			return strings.HasPrefix(s, "GET /metadata/") && strings.HasSuffix(s, "targets.json")
		}},
		{"a telemetry batch", func(s string) bool { return s == "POST /v1/telemetry" }},
	} {
		ok, seen := f.hits.wait(ctx, w.match)
		if !ok {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("the vendor's server saw no %s; it saw %v\ndaemon log:\n%s", w.what, seen, log)
		}
	}
}

// TestVendorBuildTests runs the vendor-build tests of hostconfig and
// cmd/ringfenced compiled as 'make dist' compiles them: with the overlay
// that embeds the vendor's values (a manifest too).
func TestVendorBuildTests(t *testing.T) {
	f := built(t)
	dir := t.TempDir()
	ovl, err := writeOverlay(dir, filepath.Dir(mustAbs(t, ".")), Vendor{
		Root: mustRead(t, f.opts.VendorRoot), ServerURL: "https://rollout.example.com", Caps: mustRead(t, f.caps),
	})
	require.NoError(t, err)
	cmd := exec.Command("go", "test", "-count=1", "-overlay", ovl, "-run", "^(TestVendorBuild|TestVersionSaysWhatIsEmbedded)$", "-v", "./hostconfig", "./cmd/ringfenced")
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, 2, strings.Count(string(out), "--- PASS: TestVendorBuild "), "%s", out)
	require.NotContains(t, string(out), "--- SKIP")
	require.Contains(t, string(out), "--- PASS: TestVersionSaysWhatIsEmbedded")
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	require.NoError(t, err)
	return a
}

package msi

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/await"
)

// wine runs Windows programs in one fresh Wine prefix.
type wine struct {
	t      *testing.T
	bin    string // wine64 or wine
	server string // wineserver
	prefix string
	env    []string
}

// run runs a Windows program (wine's own: msiexec, sc, reg) and returns
// its output and exit code.
func (w *wine) run(timeout time.Duration, args ...string) (string, int) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.bin, args...)
	cmd.Env = w.env
	// A file, not a pipe: the services Wine starts (services.exe, the
	// service itself) inherit it and hold it open, and Wait would wait for
	// them.
	f, err := os.CreateTemp(w.t.TempDir(), "wine-out-*")
	require.NoError(w.t, err)
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		w.t.Fatalf("wine %s: no answer in %v", strings.Join(args, " "), timeout)
	}
	out, rerr := os.ReadFile(f.Name())
	require.NoError(w.t, rerr)
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		require.True(w.t, ok, "wine %s: %v", strings.Join(args, " "), err)
		code = ee.ExitCode()
	}
	// Debian's wine wrapper says so when there is no 32-bit Wine: noise here.
	return wineNoise.ReplaceAllString(string(out), ""), code
}

var wineNoise = regexp.MustCompile(`(?s)it looks like wine32 is missing.*?apt-get install wine32:i386"\n`)

// winPath is path as Wine's Z: drive shows it.
func winPath(path string) string { return `Z:` + strings.ReplaceAll(path, "/", `\`) }

// drive is the Unix path of a file on the prefix's C: drive.
func (w *wine) drive(path string) string {
	return filepath.Join(w.prefix, "drive_c", filepath.FromSlash(strings.ReplaceAll(strings.TrimPrefix(path, `C:\`), `\`, "/")))
}

// msiexec runs msiexec quietly with a verbose log, which it returns.
func (w *wine) msiexec(args ...string) (string, int) {
	w.t.Helper()
	log := filepath.Join(w.t.TempDir(), "msiexec.log")
	out, code := w.run(2*time.Minute, append(append([]string{"msiexec"}, args...), "/qn", "/l*v", winPath(log))...)
	b, _ := os.ReadFile(log)
	return out + string(b), code
}

// service returns the service's state as sc query prints it ("RUNNING"),
// or "" when it is not registered.
func (w *wine) service() string {
	out, code := w.run(time.Minute, "sc", "query", "ringfenced")
	if code != 0 {
		return ""
	}
	m := regexp.MustCompile(`STATE\s*:\s*\d+\s+(\w+)`).FindStringSubmatch(out)
	if m == nil {
		w.t.Fatalf("sc query ringfenced: %s", out)
	}
	return m[1]
}

// daemonStarted waits until the daemon the service control manager
// started has made its root (its host key and state.db): it ran with the
// registered command line and the installed configuration. It returns the
// service's state then.
func (w *wine) daemonStarted() string {
	w.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err1 := os.Stat(w.drive(`C:\ProgramData\Ringfence\root\identity\host.key`))
		_, err2 := os.Stat(w.drive(`C:\ProgramData\Ringfence\root\state.db`))
		if err1 == nil && err2 == nil {
			return w.service()
		}
		if time.Now().After(deadline) {
			out, _ := w.run(time.Minute, "sc", "query", "ringfenced")
			w.t.Fatalf("the service's daemon made no root in 60 s: %s", out)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// killDaemon ends the prefix's ringfenced processes, found by their
// WINEPREFIX and command line in /proc (see TestWineInstall for why),
// and waits until they are gone.
func (w *wine) killDaemon() {
	w.t.Helper()
	await.Until(w.t, 30*time.Second, 200*time.Millisecond, func() error {
		pids := w.daemonPIDs()
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill()
			}
		}
		return fmt.Errorf("processes %v", pids)
	}, "ringfenced processes still there after 30 s")
}

func (w *wine) daemonPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if !bytes.Contains(cmdline, []byte(`ringfenced.exe`)) {
			continue
		}
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if slices.Contains(strings.Split(string(env), "\x00"), "WINEPREFIX="+w.prefix) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// regQuery is `reg query KEY`: its output, and whether the key exists.
func (w *wine) regQuery(key string) (string, bool) {
	out, code := w.run(time.Minute, "reg", "query", key)
	return out, code == 0
}

// actionReturned is what an msiexec log says an action returned ("1" is
// success), from its last run.
func actionReturned(log, action string) string {
	m := regexp.MustCompile(`Action ended [^:]*:\d\d:\d\d: `+action+`\. Return value (\d+)`).FindAllStringSubmatch(log, -1)
	if m == nil {
		return ""
	}
	return m[len(m)-1][1]
}

// TestWineInstall installs the .msi with Wine's msiexec in a fresh prefix,
// checks the files, the service (registered, running, as configured), an
// upgrade in place that keeps the configuration, and an uninstall that
// removes the service and the programs and keeps the root. What Wine 8
// cannot show is logged: the ACLs (its icacls is a stub) and the recovery
// actions (its services.exe accepts and does not store them).
func TestWineInstall(t *testing.T) {
	requireTools(t)
	if os.Getenv("RINGFENCE_MSI_WINE") != "1" {
		t.Skip("SKIPPED installing the .msi under Wine: set RINGFENCE_MSI_WINE=1 (about 40 s: a fresh Wine prefix, three msiexec runs)")
	}
	w := &wine{t: t}
	for _, name := range []string{"wine64", "wine"} {
		if p, err := exec.LookPath(name); err == nil {
			w.bin = p
			break
		}
	}
	server, err := exec.LookPath("wineserver")
	if w.bin == "" || err != nil {
		t.Skip("SKIPPED installing the .msi under Wine: no wine or wineserver; 'make deps' installs wine")
	}
	w.server = server
	gcc, err := exec.LookPath("x86_64-w64-mingw32-gcc")
	if err != nil {
		t.Skip("SKIPPED installing the .msi under Wine: no x86_64-w64-mingw32-gcc to build the bcryptprimitives.dll Go binaries need and Wine 8 lacks; 'make deps' installs gcc-mingw-w64-x86-64")
	}
	start := time.Now()

	v1opts := testOptions(t, "v1.2.3")
	v1, _ := build(t, v1opts)
	v2opts := v1opts
	v2opts.Version = "v1.2.4-2-gabcdef012345"
	v2opts.Config = []byte(testConfig + "# the configuration of v1.2.4's package\n")
	v2, _ := build(t, v2opts)
	code := func(msi string) string {
		for _, r := range export(t, msi, "Property") {
			if r["Property"] == "ProductCode" {
				return r["Value"]
			}
		}
		t.Fatalf("%s: no ProductCode", msi)
		return ""
	}
	v1code, v2code := code(v1), code(v2)

	// A fresh prefix: wineboot, then wait for its wineserver to end. An
	// msiexec started while wineboot's services.exe is still up fails:
	// the service InstallServices created is not found by sc.exe a moment
	// later (sc: "failed to open service 1060"), every time here.
	w.prefix = filepath.Join(t.TempDir(), "prefix")
	w.env = append(os.Environ(), "WINEPREFIX="+w.prefix, "WINEDEBUG=-all", "WINEDLLOVERRIDES=mscoree,mshtml=", "DISPLAY=")
	t.Cleanup(func() {
		c := exec.Command(w.server, "-k")
		c.Env = w.env
		_ = c.Run()
	})
	if out, c := w.run(5*time.Minute, "wineboot", "-i"); c != 0 {
		t.Fatalf("wineboot -i: exit %d: %s", c, out)
	}
	wait := exec.Command(w.server, "-w")
	wait.Env = w.env
	require.NoError(t, wait.Run())
	// One wineserver for the rest, persistent: services.exe starts once,
	// and auto-starts ringfenced (Start=auto) only then, not whenever a
	// new session begins between two commands.
	persist := exec.Command(w.server, "-p")
	persist.Env = w.env
	require.NoError(t, persist.Run())
	// Go 1.22+ binaries need bcryptprimitives.dll (ProcessPrng); Wine 8 has
	// none: the repository's stand-in (wine/run.sh does the same).
	dll := filepath.Join(w.prefix, "drive_c", "windows", "system32", "bcryptprimitives.dll")
	out, err := exec.Command(gcc, "-O2", "-shared", "-o", dll, "../../wine/bcryptprimitives.c", "../../wine/bcryptprimitives.def", "-ladvapi32").CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Logf("wine: prefix ready in %v", time.Since(start).Round(time.Second))

	// Install.
	log, c := w.msiexec("/i", winPath(v1))
	require.Equal(t, 0, c, "msiexec /i v1.2.3:\n%s", log)
	for path, want := range map[string][]byte{
		`C:\Program Files\Ringfence\ringfenced.exe`: mustRead(t, v1opts.Ringfenced),
		`C:\Program Files\Ringfence\ringfence.exe`:  mustRead(t, v1opts.Ringfence),
		`C:\ProgramData\Ringfence\ringfenced.toml`:  v1opts.Config,
		`C:\ProgramData\Ringfence\root.json`:        v1opts.TrustedRoot,
	} {
		got, err := os.ReadFile(w.drive(path))
		require.NoError(t, err, "%s installed", path)
		require.True(t, bytes.Equal(want, got), "%s: the package's bytes", path)
	}
	st, err := os.Stat(w.drive(`C:\ProgramData\Ringfence\root`))
	require.NoError(t, err, "the root is created")
	require.True(t, st.IsDir())

	svc, ok := w.regQuery(`HKLM\System\CurrentControlSet\Services\ringfenced`)
	require.True(t, ok, "the service is registered")
	t.Logf("reg query HKLM\\System\\CurrentControlSet\\Services\\ringfenced:\n%s", strings.TrimSpace(svc))
	for _, want := range []string{
		`ImagePath    REG_SZ    C:\Program Files\Ringfence\ringfenced.exe run --config "C:\ProgramData\Ringfence\ringfenced.toml"`,
		`Start    REG_DWORD    0x2`, // automatic
		`Type    REG_DWORD    0x10`, // own process
		`DisplayName    REG_SZ    Ringfence updater`,
		`ObjectName    REG_SZ    LocalSystem`,
	} {
		require.Contains(t, svc, want)
	}
	ev, ok := w.regQuery(`HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\ringfenced`)
	require.True(t, ok, "the event-log source is registered")
	require.Contains(t, ev, `EventMessageFile    REG_EXPAND_SZ    %SystemRoot%\System32\EventCreate.exe`)
	require.Contains(t, ev, `TypesSupported    REG_DWORD    0x7`)
	_, ok = w.regQuery(`HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall\` + v1code)
	require.True(t, ok, "v1.2.3 is registered as installed")

	// The custom actions ran and succeeded ("1"); what they did, where Wine
	// can show it.
	for _, a := range []string{"RingfenceAclData", "RingfenceAclRoot", "RingfenceRecovery"} {
		require.Equal(t, "1", actionReturned(log, a), "%s succeeded:\n%s", a, log)
	}
	t.Log("ACLs: not checked: Wine's icacls.exe is a stub (\"This is dummy icacls, not performing ACL manipulations\") that exits 0; the msiinfo test checks the command line")
	if fa, _ := w.run(time.Minute, "reg", "query", `HKLM\System\CurrentControlSet\Services\ringfenced`, "/v", "FailureActions"); strings.Contains(fa, "FailureActions") {
		t.Logf("recovery actions: %s", strings.TrimSpace(fa))
	} else {
		t.Log("recovery actions: not checked: Wine 8's services.exe accepts `sc failure` (exit 0) and stores nothing (no FailureActions value); the msiinfo test checks the command line")
	}

	// The service control manager starts the daemon (RingfenceStart) with
	// the registered command line and the installed configuration: it makes
	// its root. Under Wine 8 it is never RUNNING: services run in session
	// 1 there, so x/sys's svc.IsWindowsService (which wants a parent
	// services.exe in session 0) says no, ringfenced runs as a console
	// process, never reports SERVICE_RUNNING, and Wine's SCM gives up after
	// 10 s (sc start: 1053) and ends the daemon, not its agent, which holds
	// ringfenced.exe open, and would keep the next msiexec from replacing
	// or removing it. killDaemon ends them.
	if state := w.daemonStarted(); state == "RUNNING" {
		t.Log("the service's daemon made its root; sc query ringfenced: RUNNING")
	} else {
		require.Equal(t, "1", actionReturned(log, "RingfenceStart"), "the start action ran")
		t.Logf("the service's daemon made its root; sc query ringfenced: %s, not RUNNING: under Wine 8 svc.IsWindowsService() is false (services run in session 1), so ringfenced never reports SERVICE_RUNNING", state)
		w.killDaemon()
	}

	// Upgrade in place: v1.2.4 replaces v1.2.3, keeps the configuration.
	require.NoError(t, os.RemoveAll(w.drive(`C:\ProgramData\Ringfence\root\state.db`)))
	log, c = w.msiexec("/i", winPath(v2))
	require.Equal(t, 0, c, "msiexec /i v1.2.4 (upgrade):\n%s", log)
	require.Equal(t, "1", actionReturned(log, "RemoveExistingProducts"), "the old version was removed:\n%s", log)
	_, ok = w.regQuery(`HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall\` + v1code)
	require.False(t, ok, "v1.2.3 is no longer installed")
	_, ok = w.regQuery(`HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall\` + v2code)
	require.True(t, ok, "v1.2.4 is installed")
	got, err := os.ReadFile(w.drive(`C:\ProgramData\Ringfence\ringfenced.toml`))
	require.NoError(t, err)
	require.Equal(t, string(v1opts.Config), string(got), "the upgrade kept the host's configuration (NeverOverwrite)")
	svc, ok = w.regQuery(`HKLM\System\CurrentControlSet\Services\ringfenced`)
	require.True(t, ok, "the service is registered again")
	require.Contains(t, svc, `ImagePath    REG_SZ    C:\Program Files\Ringfence\ringfenced.exe run --config "C:\ProgramData\Ringfence\ringfenced.toml"`)
	if w.daemonStarted() != "RUNNING" {
		w.killDaemon()
	}
	t.Logf("upgraded to v1.2.4: v1.2.3 removed first, configuration kept, service registered and started again; %v so far", time.Since(start).Round(time.Second))

	// Downgrade refused: FindRelatedProducts finds the newer version, the
	// launch condition fails, msiexec exits 1603 (67: Wine passes on its
	// low byte). Wine's log does not carry the condition's message.
	log, c = w.msiexec("/i", winPath(v1))
	require.Equal(t, 1603&0xff, c, "v1.2.3 over v1.2.4:\n%s", log)
	require.Contains(t, log, "Property(S): RINGFENCE_NEWER_FOUND = "+v2code)
	require.Equal(t, "0", actionReturned(log, "LaunchConditions"), "the launch condition failed")
	require.NotContains(t, log, "InstallFiles")
	_, ok = w.regQuery(`HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall\` + v2code)
	require.True(t, ok, "v1.2.4 is still installed")

	// Uninstall: the service and the programs go, the root and the
	// configuration stay.
	rootFiles, err := os.ReadDir(w.drive(`C:\ProgramData\Ringfence\root`))
	require.NoError(t, err)
	log, c = w.msiexec("/x", winPath(v2))
	require.Equal(t, 0, c, "msiexec /x v1.2.4:\n%s", log)
	_, ok = w.regQuery(`HKLM\System\CurrentControlSet\Services\ringfenced`)
	require.False(t, ok, "the service is gone")
	require.Equal(t, "", w.service())
	_, ok = w.regQuery(`HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\ringfenced`)
	require.False(t, ok, "the event-log source is gone")
	_, ok = w.regQuery(`HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall\` + v2code)
	require.False(t, ok, "nothing is registered as installed")
	for _, gone := range []string{`C:\Program Files\Ringfence\ringfenced.exe`, `C:\Program Files\Ringfence\ringfence.exe`, `C:\Program Files\Ringfence`} {
		_, err := os.Stat(w.drive(gone))
		require.ErrorIs(t, err, os.ErrNotExist, gone)
	}
	for _, kept := range []string{`C:\ProgramData\Ringfence\ringfenced.toml`, `C:\ProgramData\Ringfence\root.json`, `C:\ProgramData\Ringfence\root`} {
		_, err := os.Stat(w.drive(kept))
		require.NoError(t, err, "%s is kept", kept)
	}
	after, err := os.ReadDir(w.drive(`C:\ProgramData\Ringfence\root`))
	require.NoError(t, err)
	require.Equal(t, names(rootFiles), names(after), "the root keeps what the daemon wrote")
	t.Logf("uninstalled: service and programs gone; kept ringfenced.toml, root.json and the root %v; %v in all", names(after), time.Since(start).Round(time.Second))
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

func names(ents []os.DirEntry) []string {
	var out []string
	for _, e := range ents {
		out = append(out, fmt.Sprint(e.Name()))
	}
	return out
}

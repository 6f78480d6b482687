package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/testbin"
	"github.com/ringfence/ringfence/internal/testtmp"
)

func TestSystemdUnit(t *testing.T) {
	cfg := hostconfig.Default()
	cfg.Root = "/var/lib/ringfence"
	sc, err := serviceConfig("/etc/ringfence/ringfenced.toml", cfg)
	require.NoError(t, err)
	abs, err := filepath.Abs("/etc/ringfence/ringfenced.toml")
	require.NoError(t, err)
	require.Equal(t, []string{"run", "--config", abs}, sc.Arguments, "the service runs with an absolute config path")
	unit := sc.Option["SystemdScript"].(string)
	for _, want := range []string{
		"Restart=on-failure", "RestartSec=2", "ProtectSystem=strict", "ReadWritePaths=/var/lib/ringfence",
		"ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes", "ProtectKernelModules=yes", "RestrictSUIDSGID=yes",
		"ExecStart={{Path | cmdEscape}}{{range Arguments}} {{. | cmd}}{{end}}",
	} {
		require.Contains(t, unit, want+"\n")
	}
	require.NotContains(t, unit, "ROOT")
	require.Equal(t, "restart", sc.Option["OnFailure"], "Windows recovery action")
}

func TestInstallRefusesBadConfig(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"install", "--config", filepath.Join(testtmp.Dir(t), "missing.toml")}, &out, &errb)
	require.Equal(t, 1, code)
	require.Contains(t, errb.String(), "fix the configuration first")
	require.NotContains(t, out.String(), "done")
}

// TestSysVRoundTrip installs, starts, stops and removes the service for
// real through SysV (this machine has no systemd as PID 1). It needs root
// and the `service` command, and leaves nothing installed.
func TestSysVRoundTrip(t *testing.T) {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("needs root on Linux")
	}
	if _, err := exec.LookPath("service"); err != nil {
		t.Skip("no `service` command (SysV)")
	}
	if b, _ := os.ReadFile("/proc/1/comm"); strings.TrimSpace(string(b)) == "systemd" {
		t.Skip("systemd runs here; this test covers the SysV fallback")
	}
	if _, err := os.Stat("/etc/init.d/" + serviceName); err == nil {
		t.Skip("a ringfenced service is installed on this machine; not touching it")
	}
	dir := testtmp.Dir(t)
	bin := testbin.Exe(testbin.Build(t, "."), ".")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "root.json"), []byte("{}"), 0o600))
	cfg := filepath.Join(dir, "ringfenced.toml")
	require.NoError(t, os.WriteFile(cfg, []byte(`root = "`+filepath.Join(dir, "root")+`"
repository = "http://127.0.0.1:9/"
trusted_root = "root.json"
channel = 291
`), 0o600))
	ctl := func(action string) (string, int) {
		c := exec.Command(bin, action, "--config", cfg)
		b, _ := c.CombinedOutput()
		return string(b), c.ProcessState.ExitCode()
	}
	t.Cleanup(func() { ctl("stop"); ctl("uninstall") })

	s, code := ctl("status")
	require.Equal(t, statusNotInstalled, code, s)
	s, code = ctl("install")
	require.Equal(t, 0, code, s)
	script, err := os.ReadFile("/etc/init.d/" + serviceName)
	require.NoError(t, err)
	require.Contains(t, string(script), `"run" "--config" "`+cfg+`"`)
	s, code = ctl("status")
	require.Equal(t, statusStopped, code, s)
	s, code = ctl("start")
	require.Equal(t, 0, code, s)
	s, code = ctl("status")
	require.Equal(t, statusRunning, code, s)
	s, code = ctl("stop")
	require.Equal(t, 0, code, s)
	s, code = ctl("uninstall")
	require.Equal(t, 0, code, s)
	s, code = ctl("status")
	require.Equal(t, statusNotInstalled, code, s)
}

package selfupdate_test

import (
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/failpoint"
	"github.com/ringfence/ringfence/internal/testbin"
	"github.com/ringfence/ringfence/selfupdate"
)

// build compiles the fake agent as version v (once per test process for
// each v).
func build(t *testing.T, v string, failTrial bool) string {
	t.Helper()
	ld := "-X main.version=" + v
	if failTrial {
		ld += " -X main.failTrial=yes"
	}
	const pkg = "./testdata/fakeagent"
	return testbin.Exe(testbin.BuildWith(t, testbin.Options{Flags: []string{"-ldflags", ld}}, pkg), pkg)
}

type host struct {
	exe, state string
}

// newHost installs v1 as the running binary.
func newHost(t *testing.T, v1 string) host {
	dir := t.TempDir()
	exe := filepath.Join(dir, "bin", "ringfenced")
	require.NoError(t, os.MkdirAll(filepath.Dir(exe), 0o755))
	b, err := os.ReadFile(v1)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(exe, b, 0o755))
	return host{exe: exe, state: filepath.Join(dir, "state")}
}

// start runs the installed binary as a service manager would.
func (h host) start(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	c := exec.Command(h.exe, append([]string{h.exe, h.state}, args...)...)
	c.Env = append(os.Environ(), env...)
	out, _ := c.CombinedOutput()
	return strings.TrimSpace(string(out)), c.ProcessState.ExitCode()
}

func sum(t *testing.T, path string) [32]byte {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return sha256.Sum256(b)
}

func TestApplyConfirmRollback(t *testing.T) {
	v1, v2, v2broken := build(t, "1", false), build(t, "2", false), build(t, "3", true)

	t.Run("update and confirm", func(t *testing.T) {
		h := newHost(t, v1)
		out, code := h.start(t, nil, "apply", v2, "2")
		require.Equal(t, 0, code, out)
		require.Contains(t, out, "applied")
		require.Equal(t, sum(t, v2), sum(t, h.exe))
		out, code = h.start(t, nil)
		require.Equal(t, 0, code)
		require.Equal(t, "2 trial", out)
		out, _ = h.start(t, nil)
		require.Equal(t, "2 run", out, "confirmed: a normal start")
		_, err := os.Stat(filepath.Join(h.state, selfupdate.OldName))
		require.ErrorIs(t, err, os.ErrNotExist, "the kept binary goes after the confirm")
	})

	t.Run("checksum mismatch", func(t *testing.T) {
		h := newHost(t, v1)
		out, code := h.start(t, nil, "apply", v2, "2", "bad-sum")
		require.Equal(t, 4, code, out)
		require.Equal(t, sum(t, v1), sum(t, h.exe), "the running binary is untouched")
		_, err := os.Stat(filepath.Join(h.state, selfupdate.PendingName))
		require.ErrorIs(t, err, os.ErrNotExist)
		out, _ = h.start(t, nil)
		require.Equal(t, "1 run", out)
	})

	t.Run("first start fails", func(t *testing.T) {
		h := newHost(t, v1)
		_, code := h.start(t, nil, "apply", v2broken, "3")
		require.Equal(t, 0, code)
		out, code := h.start(t, nil)
		require.Equal(t, 3, code, "the new binary dies before it confirms: %s", out)
		out, code = h.start(t, nil) // the service manager restarts it
		require.Equal(t, 1, code)
		require.Equal(t, "3 restart", out)
		require.Equal(t, sum(t, v1), sum(t, h.exe), "the old binary is back")
		out, code = h.start(t, nil)
		require.Equal(t, 0, code)
		require.Equal(t, "1 run", out)
		failed, err := selfupdate.Failed(h.state)
		require.NoError(t, err)
		require.Equal(t, []string{"3"}, failed)
		out, code = h.start(t, nil, "apply", v2broken, "3")
		require.Equal(t, 4, code, "a version that failed is never applied again: %s", out)
		require.Contains(t, out, "failed its first start")
	})

	// Crash points: the applying process dies at each failpoint; the
	// binary in place is always v1 or v2 whole, and the next starts end on
	// a working binary.
	for _, fp := range []string{selfupdate.FailpointPendingWritten, selfupdate.FailpointSwapped} {
		t.Run("crash at "+fp, func(t *testing.T) {
			h := newHost(t, v1)
			_, code := h.start(t, []string{failpoint.EnvKill + "=" + fp}, "apply", v2, "2")
			require.NotEqual(t, 0, code)
			s := sum(t, h.exe)
			require.True(t, s == sum(t, v1) || s == sum(t, v2), "a whole binary is in place")
			out, code := h.start(t, nil)
			require.Equal(t, 0, code, out)
			out, _ = h.start(t, nil)
			require.Regexp(t, `^[12] run$`, out)
		})
	}
	t.Run("crash at "+selfupdate.FailpointTrialRecorded, func(t *testing.T) {
		h := newHost(t, v1)
		_, code := h.start(t, nil, "apply", v2, "2")
		require.Equal(t, 0, code)
		_, code = h.start(t, []string{failpoint.EnvKill + "=" + selfupdate.FailpointTrialRecorded})
		require.NotEqual(t, 0, code)
		out, code := h.start(t, nil)
		require.Equal(t, "2 restart", out, "a trial that died is rolled back")
		require.Equal(t, 1, code)
		out, _ = h.start(t, nil)
		require.Equal(t, "1 run", out)
	})
}

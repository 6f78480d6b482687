package daemon

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestUsageMeasuresAProcess: the CPU time the platform accounts follows
// what a process spins, in the right unit (never more than the wall-clock
// time it spun on one core, with a tick to spare), and its resident memory
// grows with what it touches.
func TestUsageMeasuresAProcess(t *testing.T) {
	a := selfAgent(t)
	u0, err := a.proc.usage()
	require.NoError(t, err)
	require.Positive(t, u0.RSS)
	start := time.Now()
	burn(t, a.proc, u0.CPU+300*time.Millisecond)
	wall := time.Since(start)
	u1, err := a.proc.usage()
	require.NoError(t, err)
	spun := u1.CPU - u0.CPU
	require.GreaterOrEqual(t, spun, 300*time.Millisecond)
	require.LessOrEqual(t, spun, time.Duration(runtime.GOMAXPROCS(0))*wall+50*time.Millisecond, "%v of CPU in %v of wall-clock time", spun, wall)

	const touch = 64 << 20
	b := make([]byte, touch)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	u2, err := a.proc.usage()
	require.NoError(t, err)
	require.Greater(t, u2.RSS, u1.RSS+touch/2, "touched %d MiB: resident %d -> %d", touch>>20, u1.RSS, u2.RSS)
	runtime.KeepAlive(b)
}

// TestUsageOfAnEndedProcess: once the process is gone and the handle
// released, a read says so instead of measuring whatever took its id.
func TestUsageOfAnEndedProcess(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^$") // runs no test and exits
	require.NoError(t, cmd.Start())
	p, err := openProc(cmd.Process.Pid)
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skip("this platform's process accounting is not read (usage_other.go)")
	}
	require.NoError(t, err)
	require.NoError(t, cmd.Wait())
	p.close()
	_, err = p.usage()
	require.Error(t, err)
}

//go:build !windows

package daemon

import (
	"errors"
	"log/slog"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/internal/testtmp"
)

// TestDaemonRecordsCleanStopWhereItCannotAsk takes Windows's path (no
// interrupt: the daemon kills the agent) on a real child process: a stop
// after the agent's load finished records STOPPED, so the trial's next load
// spends no try; a stop during the load, or after the agent already died,
// records nothing.
func TestDaemonRecordsCleanStopWhereItCannotAsk(t *testing.T) {
	interruptAgent = func(*os.Process) error { return errors.ErrUnsupported }
	t.Cleanup(func() { interruptAgent = interrupt })

	for _, tc := range []struct {
		name      string
		ready     bool
		diedFirst bool
		want      bootguard.Crumb
	}{
		{"stopped after the load", true, false, bootguard.CrumbStopped},
		{"stopped during the load", false, false, bootguard.CrumbLoaded},
		{"died before the stop", true, true, bootguard.CrumbLoaded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := trialLoaded(t)
			cfg := &hostconfig.Config{Root: root, Channel: 291}
			s := &supervisor{cfg: cfg, command: []string{"sleep", "60"}, clock: clock.System{}, log: slog.New(slog.DiscardHandler)}
			require.NoError(t, s.start())
			s.ready = tc.ready
			if tc.diedFirst {
				require.NoError(t, s.agent.cmd.Process.Kill())
				<-s.agent.exited
			}
			s.stop()
			rec, err := bootguard.Read(installer.RecordPathOf(root, 291))
			require.NoError(t, err)
			require.Equal(t, tc.want, rec.Entry(rec.Active).Crumb)
		})
	}
}

// trialLoaded returns a root whose channel 291 runs the trial of 1002 over
// 1001, loaded (breadcrumb LOADED).
func trialLoaded(t *testing.T) string {
	root := testtmp.Dir(t)
	in, err := installer.Open(root, installer.Options{Capabilities: testfiles.Capabilities(t, "7.11")})
	require.NoError(t, err)
	defer in.Close()
	for _, name := range []string{"good-ipc-1001", "good-ipc-1002"} {
		_, _, err := in.Install(testfiles.Channel(t, name), installer.StageOptions{})
		require.NoError(t, err)
		c, err := in.Channel(291)
		require.NoError(t, err)
		_, err = c.Boot(true)
		require.NoError(t, err)
		if name == "good-ipc-1001" {
			_, err = c.MarkGood()
			require.NoError(t, err)
		}
	}
	return root
}

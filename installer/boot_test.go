package installer_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/testtmp"
)

// TestMarkStopped: a clean stop after a trial's load is recorded (the next
// boot spends no try), also through an Installer already closed, as the
// agent's is when it stops; a read-only root, a root with no channel and
// GOOD content are left as they are.
func TestMarkStopped(t *testing.T) {
	crumb := func(in *installer.Installer, s bootguard.Slot) bootguard.Crumb {
		r := record(t, in)
		return r.Entry(s).Crumb
	}
	require.NoError(t, open(t, testtmp.Dir(t)).MarkStopped(), "no channel yet: nothing to do")

	root := testtmp.Dir(t)
	in := open(t, root)
	goodOn(t, in, "good-ipc-1001")
	require.NoError(t, in.MarkStopped())
	require.Equal(t, bootguard.CrumbNone, crumb(in, bootguard.SlotA), "GOOD: nothing recorded")

	_, _, err := in.Install(content(t, "good-ipc-1002"), installer.StageOptions{})
	require.NoError(t, err)
	res, err := in.Boot(true)
	require.NoError(t, err)
	require.Equal(t, uint8(1), res.Decision.Entry.Tries)

	require.NoError(t, in.Close())
	ro, err := installer.Open(root, installer.Options{Capabilities: capabilities(t), ReadOnly: true})
	require.NoError(t, err)
	require.NoError(t, ro.MarkStopped())
	require.NoError(t, ro.Close())
	require.Equal(t, bootguard.CrumbLoaded, crumb(in, bootguard.SlotB), "read-only: nothing written")

	require.NoError(t, in.MarkStopped(), "after Close: only the boot record is written")
	require.Equal(t, bootguard.CrumbStopped, crumb(in, bootguard.SlotB))

	in = open(t, root)
	res, err = in.Boot(true)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyTrial, res.Decision.Why)
	require.Equal(t, uint8(1), res.Decision.Entry.Tries, "the boot after a clean stop spent no try")
}

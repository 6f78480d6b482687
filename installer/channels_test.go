package installer_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/internal/testtmp"
)

// onChannel returns testdata file name moved to channel ch, with version
// (0 keeps it).
func onChannel(t testing.TB, name string, ch, version uint32) []byte {
	return testfiles.ChannelOn(t, name, ch, version)
}

// channel returns root's Installer of channel ch.
func channel(t testing.TB, in *installer.Installer, ch uint32) *installer.Installer {
	t.Helper()
	c, err := in.Channel(ch)
	require.NoError(t, err)
	return c
}

// goodData installs data on its channel and takes it through a healthy
// trial.
func goodData(t testing.TB, in *installer.Installer, data []byte) {
	t.Helper()
	st, _, err := in.Install(data, installer.StageOptions{})
	require.NoError(t, err)
	c := channel(t, in, st.Channel)
	res, err := c.Boot(true)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyTrial, res.Decision.Why)
	_, err = c.MarkGood()
	require.NoError(t, err)
}

// TestChannelsAreIndependent: one root, three channels, one state.db. A
// crash while loading channel 292's trial reverts 292 alone; 291 and 293
// keep their content, their records byte for byte.
func TestChannelsAreIndependent(t *testing.T) {
	root := testtmp.Dir(t)
	in := open(t, root)
	goodData(t, in, content(t, "good-ipc-1001"))
	goodData(t, in, onChannel(t, "good-ipc-1001", 292, 2001))
	goodData(t, in, onChannel(t, "good-ipc-1001", 293, 3001))
	require.Equal(t, []uint32{291, 292, 293}, in.Channels())
	require.Equal(t, uint32(0), in.Ch(), "several channels: the root's Installer acts on none")
	_, err := in.Boot(true)
	require.ErrorIs(t, err, installer.ErrNoChannel)

	_, _, err = in.Install(onChannel(t, "good-ipc-1002", 292, 2002), installer.StageOptions{})
	require.NoError(t, err)
	before := map[uint32][]byte{}
	for _, ch := range []uint32{291, 293} {
		before[ch], err = os.ReadFile(channel(t, in, ch).RecordPath())
		require.NoError(t, err)
	}
	c292 := channel(t, in, 292)
	res, err := c292.Boot(false) // the load crashes: the breadcrumb stays LOADING
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyTrial, res.Decision.Why)
	res, err = c292.Boot(true)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyLoadCrash, res.Decision.Why)
	require.Equal(t, uint32(2001), res.Decision.Entry.Version)
	for _, ch := range []uint32{291, 293} {
		after, err := os.ReadFile(channel(t, in, ch).RecordPath())
		require.NoError(t, err)
		require.Equal(t, before[ch], after, "channel %d untouched", ch)
		r, err := channel(t, in, ch).Boot(true)
		require.NoError(t, err)
		require.Equal(t, bootguard.WhyGood, r.Decision.Why)
	}
	q, err := in.Quarantined()
	require.NoError(t, err)
	require.Len(t, q, 1)
	require.Equal(t, uint32(292), q[0].Channel)
	require.Equal(t, uint32(2002), q[0].Version)
}

// TestOneTrialAtATime: while channel 292 is in its trial, content for 291 is
// staged but not activated; once 292 is marked good, 291's activates.
func TestOneTrialAtATime(t *testing.T) {
	in := open(t, testtmp.Dir(t))
	goodData(t, in, content(t, "good-ipc-1001"))
	goodData(t, in, onChannel(t, "good-ipc-1001", 292, 2001))
	_, _, err := in.Install(onChannel(t, "good-ipc-1002", 292, 2002), installer.StageOptions{})
	require.NoError(t, err)
	c291 := channel(t, in, 291)
	require.Equal(t, uint32(292), c291.TrialRunning())

	st, _, err := in.Install(content(t, "good-ipc-1002"), installer.StageOptions{})
	require.ErrorIs(t, err, installer.ErrTrialRunning)
	require.ErrorContains(t, err, "another channel is in its trial (292); channel 291 waits")
	r := record(t, c291)
	require.Equal(t, bootguard.StateGood, r.Entry(r.Active).State, "291 keeps its good content")
	require.Equal(t, bootguard.StateStaged, r.Entry(st.Slot).State, "1002 is staged, waiting")

	c292 := channel(t, in, 292)
	_, err = c292.Boot(true)
	require.NoError(t, err)
	_, err = c292.MarkGood()
	require.NoError(t, err)
	require.Equal(t, uint32(0), c291.TrialRunning())
	_, err = c291.Activate(st.Slot)
	require.NoError(t, err)
	res, err := c291.Boot(true)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyTrial, res.Decision.Why)
	require.Equal(t, uint32(1002), res.Decision.Entry.Version)
}

// legacyRoot makes a root of the single-channel layout (before channels):
// the boot record and slots at the root, channel 291 with 1001 good and 1002
// in its trial, as the installer of that time left them.
func legacyRoot(t *testing.T) string {
	t.Helper()
	root := testtmp.Dir(t)
	in := open(t, root)
	goodOn(t, in, "good-ipc-1001")
	_, _, err := in.Install(content(t, "good-ipc-1002"), installer.StageOptions{})
	require.NoError(t, err)
	require.NoError(t, in.Close())
	ch := filepath.Join(root, installer.ChannelsDir, "291")
	require.NoError(t, os.Rename(filepath.Join(ch, installer.SlotsDir), filepath.Join(root, installer.SlotsDir)))
	require.NoError(t, os.Rename(filepath.Join(ch, installer.RecordName), filepath.Join(root, installer.RecordName)))
	require.NoError(t, testtmp.RemoveAll(filepath.Join(root, installer.ChannelsDir)))
	return root
}

// TestLegacyRootMigrates: a root of the single-channel layout is converted
// at Open with nothing lost (the record byte for byte, the slots, the
// trial, the quarantine list), and boots as before; a conversion cut short
// between its two renames is finished by the next Open.
func TestLegacyRootMigrates(t *testing.T) {
	for _, cut := range []bool{false, true} {
		root := legacyRoot(t)
		legacy, err := os.ReadFile(filepath.Join(root, installer.RecordName))
		require.NoError(t, err)
		if cut {
			// The slots moved, then the process died.
			dir := filepath.Join(root, installer.ChannelsDir, "291")
			require.NoError(t, os.MkdirAll(dir, 0o700))
			require.NoError(t, os.Rename(filepath.Join(root, installer.SlotsDir), filepath.Join(dir, installer.SlotsDir)))
		}
		in := open(t, root)
		require.Equal(t, []uint32{291}, in.Channels())
		require.Contains(t, in.Warnings()[len(in.Warnings())-1], "converted the single-channel root")
		got, err := os.ReadFile(in.RecordPath())
		require.NoError(t, err)
		require.Equal(t, legacy, got, "the record moved, unchanged")
		for _, p := range []string{installer.RecordName, installer.SlotsDir} {
			_, err := os.Stat(filepath.Join(root, p))
			require.True(t, os.IsNotExist(err), "%s left at the root", p)
		}
		res, err := in.Boot(true)
		require.NoError(t, err)
		require.Equal(t, bootguard.WhyTrial, res.Decision.Why)
		require.Equal(t, uint32(1002), res.Decision.Entry.Version)
		_, err = in.MarkGood()
		require.NoError(t, err)
		require.NoError(t, in.Close())
	}
}

// TestTornWriteOfOneChannel: a write of channel 292's record torn at every
// length leaves 292 on its old or new record, and channel 291 untouched.
func TestTornWriteOfOneChannel(t *testing.T) {
	root := testtmp.Dir(t)
	in := open(t, root)
	goodData(t, in, content(t, "good-ipc-1001"))
	goodData(t, in, onChannel(t, "good-ipc-1001", 292, 2001))
	_, _, err := in.Install(onChannel(t, "good-ipc-1002", 292, 2002), installer.StageOptions{})
	require.NoError(t, err)
	c291, c292 := channel(t, in, 291), channel(t, in, 292)
	rec291, err := os.ReadFile(c291.RecordPath())
	require.NoError(t, err)
	old, err := os.ReadFile(c292.RecordPath())
	require.NoError(t, err)
	// The write the loader makes before the trial loads (the breadcrumb).
	d, err := bootguard.Select(c292.RecordPath())
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyTrial, d.Why)
	updated, err := os.ReadFile(c292.RecordPath())
	require.NoError(t, err)
	off := 0
	if string(old[:bootguard.CopySize]) == string(updated[:bootguard.CopySize]) {
		off = bootguard.CopySize
	}
	for n := 0; n <= bootguard.CopySize; n++ {
		torn := append([]byte{}, old...)
		copy(torn[off:off+n], updated[off:off+n])
		require.NoError(t, os.WriteFile(c292.RecordPath(), torn, 0o600))
		r, err := bootguard.Read(c292.RecordPath())
		require.NoError(t, err, "torn at %d", n)
		require.Equal(t, bootguard.StateTrial, r.Entry(r.Active).State, "torn at %d", n)
		got, err := os.ReadFile(c291.RecordPath())
		require.NoError(t, err)
		require.Equal(t, rec291, got, "torn at %d: channel 291 untouched", n)
		d, err := bootguard.Select(c291.RecordPath())
		require.NoError(t, err)
		require.Equal(t, bootguard.WhyGood, d.Why)
	}
}

// TestLegacyRootReadOnly: a root of the single-channel layout on a disk
// opened read-only (a rescue shell looking first) is read where it is:
// status and a dry-run recovery see channel 291 and change nothing.
func TestLegacyRootReadOnly(t *testing.T) {
	root := legacyRoot(t)
	before, err := os.ReadFile(filepath.Join(root, installer.RecordName))
	require.NoError(t, err)
	ro, err := installer.Open(root, installer.Options{Capabilities: capabilities(t), ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	require.Equal(t, []uint32{291}, ro.Channels())
	st := ro.Status()
	require.True(t, st.RecordValid)
	require.Equal(t, installer.NextLoad{Action: "load", Slot: "b", Channel: 291, Version: 1002, Why: "trial"}, st.Next)
	require.True(t, st.Slots[1].Verified)
	rep, err := ro.Recover(installer.TargetLastGood, true)
	require.NoError(t, err)
	require.Equal(t, uint32(1001), rep.After.Version)
	after, err := os.ReadFile(filepath.Join(root, installer.RecordName))
	require.NoError(t, err)
	require.Equal(t, before, after)
	_, err = os.Stat(filepath.Join(root, installer.ChannelsDir))
	require.True(t, os.IsNotExist(err), "nothing converted on a read-only open")
}

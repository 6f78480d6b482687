package installer_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/validator"
)

// epoch is the installer tests' time: what history and quarantine entries
// are stamped with.
var epoch = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func content(t testing.TB, name string) []byte { return testfiles.Channel(t, name) }

func capabilities(t testing.TB) *validator.Capabilities { return testfiles.Capabilities(t, "7.11") }

func open(t testing.TB, root string) *installer.Installer {
	t.Helper()
	in, err := installer.Open(root, installer.Options{Capabilities: capabilities(t), Clock: clock.NewFake(epoch)})
	require.NoError(t, err)
	t.Cleanup(func() { in.Close() })
	return in
}

func record(t testing.TB, in *installer.Installer) bootguard.Record {
	t.Helper()
	r, err := bootguard.Read(in.RecordPath())
	require.NoError(t, err)
	return r
}

// stage checks and stages the named testdata file.
func stage(t testing.TB, in *installer.Installer, name string, opts installer.StageOptions) (installer.Staged, error) {
	t.Helper()
	c, err := in.Check(content(t, name))
	if err != nil {
		return installer.Staged{}, err
	}
	return in.Stage(c, opts)
}

// goodOn installs version name and takes it through a healthy trial.
func goodOn(t testing.TB, in *installer.Installer, name string) {
	t.Helper()
	goodData(t, in, content(t, name))
}

func TestLifecycle(t *testing.T) {
	in := open(t, testtmp.Dir(t))

	// Fresh host: nothing to load.
	res, err := in.Boot(false)
	require.NoError(t, err)
	require.Equal(t, bootguard.ActionNoContent, res.Decision.Action)

	goodOn(t, in, "good-ipc-1001")
	r := record(t, in)
	require.Equal(t, bootguard.SlotA, r.Active)
	require.Equal(t, bootguard.StateGood, r.Entry(bootguard.SlotA).State)

	// 1002 goes into the other slot, on trial, with 1001 as its fallback.
	st, rec, err := in.Install(content(t, "good-ipc-1002"), installer.StageOptions{})
	require.NoError(t, err)
	require.Equal(t, bootguard.SlotB, st.Slot)
	require.Equal(t, bootguard.SlotB, rec.Active)
	require.Equal(t, bootguard.SlotA, rec.Fallback)
	require.Equal(t, bootguard.StateTrial, rec.Entry(bootguard.SlotB).State)

	// While the trial runs, nothing may be staged: the other slot is its fallback.
	_, err = stage(t, in, "good-ipc-1003", installer.StageOptions{})
	require.ErrorIs(t, err, bootguard.ErrTrialInProgress)

	// Boot 1 crashes while loading (no --loaded); boot 2 falls back by itself.
	res, err = in.Boot(false)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyTrial, res.Decision.Why)
	require.Equal(t, uint32(1002), res.Decision.Entry.Version)
	res, err = in.Boot(true)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyLoadCrash, res.Decision.Why)
	require.Equal(t, bootguard.SlotA, res.Decision.Slot)
	require.Equal(t, uint32(1001), res.Decision.Entry.Version)
	require.True(t, res.Loaded)

	r = record(t, in)
	require.Equal(t, bootguard.StateBad, r.Entry(bootguard.SlotB).State)
	require.Equal(t, bootguard.ReasonLoadCrash, r.Entry(bootguard.SlotB).Reason)
	q, err := in.Quarantined()
	require.NoError(t, err)
	require.Len(t, q, 1)
	require.Equal(t, uint32(1002), q[0].Version)

	// Never retried automatically; an admin can override.
	_, err = stage(t, in, "good-ipc-1002", installer.StageOptions{})
	require.ErrorIs(t, err, installer.ErrQuarantined)
	_, err = stage(t, in, "good-ipc-1002", installer.StageOptions{Unquarantine: true})
	require.NoError(t, err)

	// A newer version is fine, and once it is good the old quarantine goes.
	goodOn(t, in, "good-ipc-1003")
	q, err = in.Quarantined()
	require.NoError(t, err)
	require.Empty(t, q)
	h, err := in.History(0)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(h), 8)
	require.Equal(t, "GOOD", h[0].To)
	require.Equal(t, uint32(1003), h[0].Version)
}

func TestStageRejects(t *testing.T) {
	in := open(t, testtmp.Dir(t))
	_, err := stage(t, in, "cf291-shape", installer.StageOptions{})
	require.ErrorIs(t, err, installer.ErrInvalid)
	require.Contains(t, err.Error(), "FIELD_NOT_SUPPLIED")

	goodOn(t, in, "good-ipc-1002")
	_, err = stage(t, in, "good-ipc-1002", installer.StageOptions{})
	require.ErrorIs(t, err, installer.ErrInvalid, "same version again is not newer")
	_, err = stage(t, in, "good-ipc-1001", installer.StageOptions{})
	require.ErrorIs(t, err, installer.ErrInvalid, "older than installed")
	require.Contains(t, err.Error(), "VERSION_NOT_MONOTONIC")
	// Nothing changed.
	r := record(t, in)
	require.Equal(t, bootguard.StateEmpty, r.Entry(bootguard.SlotB).State)
}

func TestTriesExhausted(t *testing.T) {
	in := open(t, testtmp.Dir(t))
	goodOn(t, in, "good-ipc-1001")
	_, _, err := in.Install(content(t, "good-ipc-1002"), installer.StageOptions{})
	require.NoError(t, err)
	// Two boots that load fine but are never marked good (crashes later in
	// the window), then the third boot reverts.
	for range 2 {
		res, err := in.Boot(true)
		require.NoError(t, err)
		require.Equal(t, bootguard.WhyTrial, res.Decision.Why)
	}
	res, err := in.Boot(true)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyTriesExhausted, res.Decision.Why)
	require.Equal(t, uint32(1001), res.Decision.Entry.Version)
}

func TestCorruptSlotReverts(t *testing.T) {
	in := open(t, testtmp.Dir(t))
	goodOn(t, in, "good-ipc-1001")
	goodOn(t, in, "good-ipc-1002") // slot b GOOD, slot a still holds 1001 GOOD
	path := filepath.Join(in.SlotDir(bootguard.SlotB), installer.ContentName)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[len(b)/2] ^= 1
	require.NoError(t, os.WriteFile(path, b, 0o600))

	res, err := in.Boot(true)
	require.NoError(t, err)
	require.Equal(t, bootguard.SlotA, res.Decision.Slot)
	require.Equal(t, uint32(1001), res.Decision.Entry.Version)
	require.Len(t, res.Notes, 1)
	require.Contains(t, res.Notes[0], "failed verification")
	r := record(t, in)
	require.Equal(t, bootguard.ReasonCorrupt, r.Entry(bootguard.SlotB).Reason)
}

// TestStateDBLoss: a corrupt or missing state.db never stops good content
// from loading.
func TestStateDBLoss(t *testing.T) {
	root := testtmp.Dir(t)
	in := open(t, root)
	goodOn(t, in, "good-ipc-1001")
	require.NoError(t, in.Close())

	require.NoError(t, os.WriteFile(filepath.Join(root, installer.StateName), []byte("not a bolt database, not at all, just junk bytes"), 0o600))
	in = open(t, root)
	require.NotEmpty(t, in.Warnings())
	res, err := in.Boot(true)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyGood, res.Decision.Why)
	require.Equal(t, uint32(1001), res.Decision.Entry.Version)
	require.NoError(t, in.Close())

	require.NoError(t, os.Remove(filepath.Join(root, installer.StateName)))
	in = open(t, root)
	res, err = in.Boot(true)
	require.NoError(t, err)
	require.Equal(t, uint32(1001), res.Decision.Entry.Version)
}

func TestRecoverTrialToLastGood(t *testing.T) {
	in := open(t, testtmp.Dir(t))
	goodOn(t, in, "good-ipc-1001")
	_, _, err := in.Install(content(t, "good-ipc-1002"), installer.StageOptions{})
	require.NoError(t, err)

	dry, err := in.Recover(installer.TargetLastGood, true)
	require.NoError(t, err)
	require.False(t, dry.Changed)
	require.Equal(t, uint32(1002), dry.Before.Version)
	require.Equal(t, uint32(1001), dry.After.Version)
	require.Equal(t, bootguard.SlotB, record(t, in).Active, "dry run changes nothing")

	rep, err := in.Recover(installer.TargetLastGood, false)
	require.NoError(t, err)
	require.True(t, rep.Changed)
	r := record(t, in)
	require.Equal(t, bootguard.SlotA, r.Active)
	require.Equal(t, bootguard.StateBad, r.Entry(bootguard.SlotB).State)
	require.Equal(t, bootguard.ReasonRecovered, r.Entry(bootguard.SlotB).Reason)
	q, err := in.Quarantined()
	require.NoError(t, err)
	require.Len(t, q, 1)

	// Already on last-known-good: nothing to do.
	rep, err = in.Recover(installer.TargetLastGood, false)
	require.NoError(t, err)
	require.False(t, rep.Changed)

	// To nothing, then to a version by number.
	rep, err = in.Recover(installer.TargetNone, false)
	require.NoError(t, err)
	require.Equal(t, "none", rep.After.Action)
	_, err = in.Recover("1001", false)
	require.ErrorIs(t, err, installer.ErrNoTarget, "1001 was recovered away from: BAD")
	_, err = in.Recover("banana", false)
	require.ErrorIs(t, err, installer.ErrNoTarget)
}

func TestRecoverRebuildsRecord(t *testing.T) {
	root := testtmp.Dir(t)
	in := open(t, root)
	goodOn(t, in, "good-ipc-1001")
	goodOn(t, in, "good-ipc-1002")
	require.NoError(t, in.Close())

	// Both copies destroyed: the loader is in safe mode.
	require.NoError(t, os.WriteFile(filepath.Join(root, installer.ChannelsDir, "291", installer.RecordName), make([]byte, bootguard.FileSize), 0o600))
	in = open(t, root)
	res, err := in.Boot(false)
	require.NoError(t, err)
	require.Equal(t, bootguard.ActionSafeMode, res.Decision.Action)

	// With history: the newest version marked good.
	rep, err := in.Recover(installer.TargetLastGood, false)
	require.NoError(t, err)
	require.True(t, rep.Rebuilt)
	require.Equal(t, uint32(1002), rep.After.Version)
	r := record(t, in)
	require.Equal(t, bootguard.StateGood, r.Entry(r.Active).State)
	require.Equal(t, bootguard.StateStaged, r.Entry(r.Active.Other()).State)

	// Without history (state.db lost too): the older, more conservative one.
	require.NoError(t, in.Close())
	require.NoError(t, os.Remove(filepath.Join(root, installer.StateName)))
	require.NoError(t, os.WriteFile(filepath.Join(root, installer.ChannelsDir, "291", installer.RecordName), []byte("garbage"), 0o600))
	in = open(t, root)
	rep, err = in.Recover(installer.TargetLastGood, false)
	require.NoError(t, err)
	require.Equal(t, uint32(1001), rep.After.Version)
	res, err = in.Boot(true)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyGood, res.Decision.Why)
	require.Equal(t, uint32(1001), res.Decision.Entry.Version)
}

func TestReadOnlyChangesNothing(t *testing.T) {
	root := testtmp.Dir(t)
	in := open(t, root)
	goodOn(t, in, "good-ipc-1001")
	_, _, err := in.Install(content(t, "good-ipc-1002"), installer.StageOptions{})
	require.NoError(t, err)
	require.NoError(t, in.Close())
	before, err := os.ReadFile(filepath.Join(root, installer.ChannelsDir, "291", installer.RecordName))
	require.NoError(t, err)

	ro, err := installer.Open(root, installer.Options{Capabilities: capabilities(t), ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	rep, err := ro.Recover(installer.TargetLastGood, false)
	require.NoError(t, err)
	require.True(t, rep.ReadOnly)
	require.False(t, rep.Changed)
	require.Equal(t, uint32(1001), rep.After.Version)
	res, err := ro.Boot(true)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyTrial, res.Decision.Why)
	_, err = ro.MarkGood()
	require.ErrorIs(t, err, installer.ErrReadOnly)
	st := ro.Status()
	require.Equal(t, "b", st.Active)
	require.Equal(t, "a", st.LastGood)
	require.True(t, st.Slots[0].Verified)

	after, err := os.ReadFile(filepath.Join(root, installer.ChannelsDir, "291", installer.RecordName))
	require.NoError(t, err)
	require.Equal(t, before, after)
}

func TestStatus(t *testing.T) {
	in := open(t, testtmp.Dir(t))
	goodOn(t, in, "good-ipc-1001")
	_, _, err := in.Install(content(t, "good-ipc-1002"), installer.StageOptions{})
	require.NoError(t, err)
	st := in.Status()
	require.True(t, st.RecordValid)
	require.Equal(t, "b", st.Active)
	require.Equal(t, "a", st.Fallback)
	require.Equal(t, "a", st.LastGood)
	require.Equal(t, installer.NextLoad{Action: "load", Slot: "b", Channel: 291, Version: 1002, Why: "trial"}, st.Next)
	require.Equal(t, "TRIAL", st.Slots[1].State)
	require.Equal(t, uint8(2), st.Slots[1].Tries)
	require.True(t, st.Slots[1].Verified)
	require.NotEmpty(t, st.History)
}

// TestReconcile: a revert the loader made on its own at boot (a driver, with
// no installer running) reaches the quarantine list at the next Open.
func TestReconcile(t *testing.T) {
	root := testtmp.Dir(t)
	in := open(t, root)
	goodOn(t, in, "good-ipc-1001")
	_, _, err := in.Install(content(t, "good-ipc-1002"), installer.StageOptions{})
	require.NoError(t, err)
	require.NoError(t, in.Close())

	// The loader, alone: a crash while loading, then the fallback.
	for range 2 {
		_, err := bootguard.Select(filepath.Join(root, installer.ChannelsDir, "291", installer.RecordName))
		require.NoError(t, err)
	}
	in = open(t, root)
	q, err := in.Quarantined()
	require.NoError(t, err)
	require.Len(t, q, 1)
	require.Equal(t, uint32(1002), q[0].Version)
	require.Equal(t, "load-crash", q[0].Reason)
	_, err = stage(t, in, "good-ipc-1002", installer.StageOptions{})
	require.ErrorIs(t, err, installer.ErrQuarantined)
}

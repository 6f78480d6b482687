package bootguard_test

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/internal/testtmp"
)

func newRecord(t *testing.T) string {
	t.Helper()
	path := filepath.Join(testtmp.Dir(t), "bootrecord")
	created, err := bootguard.Init(path)
	require.NoError(t, err)
	require.True(t, created)
	return path
}

func stage(t *testing.T, path string, s bootguard.Slot, version uint32) {
	t.Helper()
	_, err := bootguard.BeginStage(path, s)
	require.NoError(t, err)
	_, err = bootguard.FinishStage(path, s, 291, version, [32]byte{byte(version)})
	require.NoError(t, err)
}

// good puts version into slot s and takes it through a healthy trial.
func good(t *testing.T, path string, s bootguard.Slot, version uint32) {
	t.Helper()
	stage(t, path, s, version)
	_, err := bootguard.Activate(path, s, bootguard.DefaultPolicy())
	require.NoError(t, err)
	d, err := bootguard.Select(path)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyTrial, d.Why)
	require.NoError(t, bootguard.MarkLoaded(path))
	_, err = bootguard.MarkGood(path)
	require.NoError(t, err)
}

func TestInit(t *testing.T) {
	path := newRecord(t)
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, int64(bootguard.FileSize), info.Size())
	created, err := bootguard.Init(path)
	require.NoError(t, err)
	require.False(t, created, "an existing valid record is left alone")

	d, err := bootguard.Select(path)
	require.NoError(t, err)
	require.Equal(t, bootguard.ActionNoContent, d.Action)
	require.False(t, d.Write, "nothing to load, nothing written")

	require.NoError(t, os.WriteFile(path, make([]byte, bootguard.FileSize), 0o600))
	_, err = bootguard.Init(path)
	require.ErrorIs(t, err, bootguard.ErrNoValidCopy, "Init never erases a damaged record")
	d, err = bootguard.Select(path)
	require.NoError(t, err)
	require.Equal(t, bootguard.ActionSafeMode, d.Action)

	d, err = bootguard.Select(filepath.Join(testtmp.Dir(t), "missing"))
	require.NoError(t, err)
	require.Equal(t, bootguard.ActionSafeMode, d.Action)
}

func TestTrialLifecycle(t *testing.T) {
	path := newRecord(t)
	good(t, path, bootguard.SlotA, 1001)
	r, err := bootguard.Read(path)
	require.NoError(t, err)
	require.Equal(t, bootguard.SlotA, r.Active)
	require.Equal(t, bootguard.SlotNone, r.Fallback)

	// GOOD content loads without a write.
	seq := r.Seq
	d, err := bootguard.Select(path)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyGood, d.Why)
	require.False(t, d.Write)
	require.NoError(t, bootguard.MarkLoaded(path), "no-op on GOOD")
	r, err = bootguard.Read(path)
	require.NoError(t, err)
	require.Equal(t, seq, r.Seq)

	stage(t, path, bootguard.SlotB, 1002)
	r, err = bootguard.Activate(path, bootguard.SlotB, bootguard.Policy{Tries: 3, LoadTries: 2})
	require.NoError(t, err)
	require.Equal(t, bootguard.SlotA, r.Fallback)
	e := r.Entry(bootguard.SlotB)
	require.Equal(t, bootguard.StateTrial, e.State)
	require.Equal(t, uint8(3), e.Tries)
	require.Equal(t, uint8(2), e.LoadTries)

	_, err = bootguard.MarkGood(path)
	require.ErrorIs(t, err, bootguard.ErrNotLoaded, "never promoted before it loaded")
	_, err = bootguard.BeginStage(path, bootguard.SlotA)
	require.ErrorIs(t, err, bootguard.ErrTrialInProgress, "the fallback is untouchable during a trial")
	_, err = bootguard.BeginStage(path, bootguard.SlotB)
	require.ErrorIs(t, err, bootguard.ErrActiveSlot)

	// LoadTries 2: the first crash while loading spends one, the trial goes on.
	d, err = bootguard.Select(path)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyTrial, d.Why)
	d, err = bootguard.Select(path)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyTrial, d.Why)
	require.Equal(t, uint8(1), d.Entry.LoadTries)
	require.Equal(t, uint8(1), d.Entry.Tries)
	require.NoError(t, bootguard.MarkLoaded(path))
	r, err = bootguard.MarkGood(path)
	require.NoError(t, err)
	require.Equal(t, bootguard.StateGood, r.Entry(bootguard.SlotB).State)
	require.Equal(t, bootguard.StateGood, r.Entry(bootguard.SlotA).State, "N-1 keeps its content")
	require.Equal(t, bootguard.SlotNone, r.Fallback, "and is free for the next stage")
	_, err = bootguard.BeginStage(path, bootguard.SlotA)
	require.NoError(t, err)
}

func TestMarkBadAndRecover(t *testing.T) {
	path := newRecord(t)
	good(t, path, bootguard.SlotA, 1001)
	good(t, path, bootguard.SlotB, 1002)

	_, err := bootguard.MarkBad(path, bootguard.ReasonNone)
	require.Error(t, err)
	r, err := bootguard.MarkBad(path, bootguard.ReasonHealthFailed)
	require.NoError(t, err)
	require.Equal(t, bootguard.SlotA, r.Active, "the other GOOD slot takes over")
	require.Equal(t, bootguard.StateBad, r.Entry(bootguard.SlotB).State)
	require.Equal(t, bootguard.ReasonHealthFailed, r.Entry(bootguard.SlotB).Reason)

	_, err = bootguard.Recover(path, bootguard.SlotB)
	require.ErrorIs(t, err, bootguard.ErrSlotState, "never back to BAD content")
	r, err = bootguard.Recover(path, bootguard.SlotNone)
	require.NoError(t, err)
	require.Equal(t, bootguard.SlotNone, r.Active)
	require.Equal(t, bootguard.ReasonRecovered, r.Entry(bootguard.SlotA).Reason)
	d, err := bootguard.Select(path)
	require.NoError(t, err)
	require.Equal(t, bootguard.ActionNoContent, d.Action)
}

func TestActivateRefuses(t *testing.T) {
	path := newRecord(t)
	_, err := bootguard.Activate(path, bootguard.SlotA, bootguard.DefaultPolicy())
	require.ErrorIs(t, err, bootguard.ErrSlotState, "EMPTY is not STAGED")
	stage(t, path, bootguard.SlotA, 1001)
	_, err = bootguard.Activate(path, bootguard.SlotA, bootguard.Policy{Tries: 1, LoadTries: 2})
	require.Error(t, err, "load tries beyond tries")
	_, err = bootguard.Activate(path, bootguard.SlotNone, bootguard.DefaultPolicy())
	require.Error(t, err)
	_, err = bootguard.FinishStage(path, bootguard.SlotA, 291, 1001, [32]byte{})
	require.ErrorIs(t, err, bootguard.ErrSlotState, "FinishStage needs a claimed slot")
}

// TestWriterAlternatesCopies: each update lands in the copy that does not
// hold the current record, with the next sequence number.
func TestWriterAlternatesCopies(t *testing.T) {
	path := newRecord(t)
	for i := range 6 {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		cur, from, ok := bootguard.Pick(data)
		require.True(t, ok)
		_, err = bootguard.FinishStage(path, bootguard.Slot(1+i%2), 1, uint32(i), [32]byte{})
		require.NoError(t, err)
		data, err = os.ReadFile(path)
		require.NoError(t, err)
		next, to, ok := bootguard.Pick(data)
		require.True(t, ok)
		require.Equal(t, 1-from, to, "round %d", i)
		require.Greater(t, next.Seq, cur.Seq)
		old, ok := bootguard.DecodeCopy(data[from*bootguard.CopySize:])
		require.True(t, ok, "the other copy still holds an older record")
		require.Less(t, old.Seq, next.Seq)
		_, err = bootguard.BeginStage(path, bootguard.Slot(1+i%2)) // back to EMPTY
		require.NoError(t, err)
	}
}

// TestNewer: serial-number arithmetic over the whole uint64 space.
func TestNewer(t *testing.T) {
	const top = math.MaxUint64
	for _, tc := range []struct {
		a, b  uint64
		newer bool
	}{
		{1, 0, true},
		{0, 1, false},
		{0, top, true}, // the write after 2^64-1
		{top, 0, false},
		{5, top, true}, // six ahead across the wrap
		{top, 5, false},
		{7, 7, false},
		{1<<63 - 1, 0, true}, // the farthest ahead a number can be
		{0, 1<<63 - 1, false},
		{1 << 63, 0, false}, // exactly 2^63 apart: neither
		{0, 1 << 63, false},
		{1<<63 + 3, 3, false},
		{3, 1<<63 + 3, false},
		{1 << 63, 1<<63 - 1, true},
	} {
		require.Equal(t, tc.newer, bootguard.Newer(tc.a, tc.b), "Newer(%d, %d)", tc.a, tc.b)
	}
	for _, s := range []uint64{0, 1, 1<<63 - 1, 1 << 63, top - 1, top} {
		require.True(t, bootguard.Newer(s+1, s), "the next sequence after %d", s)
		require.False(t, bootguard.Newer(s, s+1))
	}
}

// TestWritesAcrossTheWrap: a record whose sequence reaches 2^64-1 goes on
// working. The write before a trial's load wraps to 0, and the next read
// finds it (the breadcrumb LOADING), then LOADED over it.
func TestWritesAcrossTheWrap(t *testing.T) {
	path := filepath.Join(testtmp.Dir(t), "bootrecord")
	// Rebuild writes seq+1 into copy 0 and seq into copy 1; FinishStage
	// and Activate write the next two (BeginStage of an empty slot writes
	// nothing), then Select writes the first after 2^64-1.
	start := uint64(math.MaxUint64 - 3)
	require.NoError(t, bootguard.Rebuild(path, bootguard.Record{Seq: start, Active: bootguard.SlotA,
		Slots: [2]bootguard.Entry{{Channel: 291, Version: 1001, State: bootguard.StateGood}}}))
	stage(t, path, bootguard.SlotB, 1002)
	_, err := bootguard.Activate(path, bootguard.SlotB, bootguard.DefaultPolicy())
	require.NoError(t, err)
	r, err := bootguard.Read(path)
	require.NoError(t, err)
	require.Equal(t, uint64(math.MaxUint64), r.Seq)

	d, err := bootguard.Select(path)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyTrial, d.Why)
	r, err = bootguard.Read(path)
	require.NoError(t, err)
	require.Equal(t, uint64(0), r.Seq)
	require.Equal(t, bootguard.CrumbLoading, r.Entry(bootguard.SlotB).Crumb, "the breadcrumb written at the wrap is the one read")

	require.NoError(t, bootguard.MarkLoaded(path))
	r, err = bootguard.Read(path)
	require.NoError(t, err)
	require.Equal(t, uint64(1), r.Seq)
	require.Equal(t, bootguard.CrumbLoaded, r.Entry(bootguard.SlotB).Crumb)

	// Rebuild moves the sequence forward from the current record, across
	// the wrap too: a sequence that is not newer than the current one is
	// replaced by the current one + 1.
	require.NoError(t, bootguard.Rebuild(path, bootguard.Record{Seq: math.MaxUint64 - 10}))
	r, err = bootguard.Read(path)
	require.NoError(t, err)
	require.Equal(t, uint64(3), r.Seq, "the rebuilt record gets the current 1 + 1 = 2; copy 0 holds 2 + 1")
}

// TestMarkStopped: a clean stop after a finished load is recorded only for
// an active trial whose breadcrumb is LOADED, and the next boot loads the
// trial again without spending a try; a crash (no clean stop) still spends
// one, and so does everything but STOPPED.
func TestMarkStopped(t *testing.T) {
	path := newRecord(t)
	seq := func() uint64 {
		r, err := bootguard.Read(path)
		require.NoError(t, err)
		return r.Seq
	}
	trial := func() bootguard.Entry {
		r, err := bootguard.Read(path)
		require.NoError(t, err)
		return *r.Entry(r.Active)
	}
	noWrite := func(why string) {
		t.Helper()
		before := seq()
		require.NoError(t, bootguard.MarkStopped(path), why)
		require.Equal(t, before, seq(), "%s: nothing written", why)
	}
	noWrite("no active slot")
	good(t, path, bootguard.SlotA, 1001)
	noWrite("GOOD")

	stage(t, path, bootguard.SlotB, 1002)
	_, err := bootguard.Activate(path, bootguard.SlotB, bootguard.DefaultPolicy()) // tries 2
	require.NoError(t, err)
	noWrite("a trial that has not loaded")
	d, err := bootguard.Select(path)
	require.NoError(t, err)
	require.Equal(t, uint8(1), d.Entry.Tries, "the first load spends a try")
	noWrite("LOADING: the load did not finish")

	// Clean stops, boot after boot: no try is spent, however many.
	for i := range 3 {
		require.NoError(t, bootguard.MarkLoaded(path))
		require.NoError(t, bootguard.MarkStopped(path))
		require.Equal(t, bootguard.CrumbStopped, trial().Crumb)
		noWrite("a stop already recorded")
		d, err = bootguard.Select(path)
		require.NoError(t, err)
		require.Equal(t, bootguard.WhyTrial, d.Why, "clean stop %d", i+1)
		require.True(t, d.Write, "the breadcrumb LOADING is written before the load")
		require.Equal(t, bootguard.CrumbLoading, d.Entry.Crumb)
		require.Equal(t, uint8(1), d.Entry.Tries, "clean stop %d spent no try", i+1)
	}

	// A crash after the load (LOADED at the next boot) spends the last try.
	require.NoError(t, bootguard.MarkLoaded(path))
	d, err = bootguard.Select(path)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyTrial, d.Why)
	require.Equal(t, uint8(0), d.Entry.Tries)

	// A clean stop with no tries left loads again; the next crash reverts.
	require.NoError(t, bootguard.MarkLoaded(path))
	require.NoError(t, bootguard.MarkStopped(path))
	d, err = bootguard.Select(path)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyTrial, d.Why)
	require.Equal(t, uint8(0), d.Entry.Tries)
	require.NoError(t, bootguard.MarkLoaded(path))
	d, err = bootguard.Select(path)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyTriesExhausted, d.Why)
	require.Equal(t, bootguard.SlotB, d.Reverted)
	require.Equal(t, bootguard.SlotA, d.Slot)
}

// TestMarkGoodAfterCleanStop: a trial whose agent stopped cleanly after the
// load can be marked good (by hand, with the agent stopped); one whose load
// did not finish cannot.
func TestMarkGoodAfterCleanStop(t *testing.T) {
	path := newRecord(t)
	good(t, path, bootguard.SlotA, 1001)
	stage(t, path, bootguard.SlotB, 1002)
	_, err := bootguard.Activate(path, bootguard.SlotB, bootguard.DefaultPolicy())
	require.NoError(t, err)
	_, err = bootguard.Select(path)
	require.NoError(t, err)
	_, err = bootguard.MarkGood(path)
	require.ErrorIs(t, err, bootguard.ErrNotLoaded)
	require.NoError(t, bootguard.MarkLoaded(path))
	require.NoError(t, bootguard.MarkStopped(path))
	r, err := bootguard.MarkGood(path)
	require.NoError(t, err)
	e := r.Entry(bootguard.SlotB)
	require.Equal(t, bootguard.StateGood, e.State)
	require.Equal(t, bootguard.CrumbNone, e.Crumb)
}

package hostdb

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/testtmp"
)

// epoch is the fake clock's start: the day of Channel File 291.
var epoch = time.Date(2024, 7, 19, 4, 9, 0, 0, time.UTC)

// openTest opens a database in a new temporary directory and closes it when
// the test ends.
func openTest(t *testing.T) (*DB, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(epoch)
	db, err := Open(filepath.Join(testtmp.Dir(t), "state.db"), Options{Clock: clk})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db, clk
}

func TestHistoryRoundTrip(t *testing.T) {
	db, clk := openTest(t)
	stamped := epoch.Add(-time.Hour)
	in := []Transition{
		{Time: stamped, Channel: 291, Version: 1, Slot: "a", From: "empty", To: "staged", Reason: "new version"},
		{Channel: 291, Version: 1, Slot: "a", From: "staged", To: "trial"}, // time from the clock
		{Channel: 291, Version: 1, Slot: "a", From: "trial", To: "good", Reason: "health window passed"},
	}
	for i, tr := range in {
		clk.Set(epoch.Add(time.Duration(i) * time.Minute))
		require.NoError(t, db.Record(tr))
	}

	got, err := db.History(0)
	require.NoError(t, err)
	require.Len(t, got, 3)
	// Newest first.
	assert.Equal(t, "good", got[0].To)
	assert.Equal(t, "trial", got[1].To)
	assert.Equal(t, "staged", got[2].To)
	assert.True(t, got[2].Time.Equal(stamped), "a given time is kept")
	assert.True(t, got[1].Time.Equal(epoch.Add(time.Minute)), "a zero time comes from the clock")
	want := in[0]
	want.Time = want.Time.UTC()
	assert.Equal(t, want, got[2])
}

func TestHistoryLimit(t *testing.T) {
	db, _ := openTest(t)
	for v := range uint32(5) {
		require.NoError(t, db.Record(Transition{Channel: 1, Version: v}))
	}
	tests := []struct {
		limit int
		want  []uint32 // versions, newest first
	}{
		{limit: 0, want: []uint32{4, 3, 2, 1, 0}},
		{limit: -1, want: []uint32{4, 3, 2, 1, 0}},
		{limit: 2, want: []uint32{4, 3}},
		{limit: 5, want: []uint32{4, 3, 2, 1, 0}},
		{limit: 9, want: []uint32{4, 3, 2, 1, 0}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
			got, err := db.History(tt.limit)
			require.NoError(t, err)
			assert.Equal(t, tt.want, versions(got))
		})
	}
}

func TestHistoryEmpty(t *testing.T) {
	db, _ := openTest(t)
	got, err := db.History(10)
	require.NoError(t, err)
	assert.Empty(t, got)
}

func versions(ts []Transition) []uint32 {
	var out []uint32
	for _, t := range ts {
		out = append(out, t.Version)
	}
	return out
}

func TestHistoryBound(t *testing.T) {
	assert.Equal(t, 10_000, MaxHistory, "the default bound")

	tests := []struct {
		name    string
		bound   uint64
		records int
		want    []uint32 // versions kept, newest first
	}{
		{name: "below the bound", bound: 3, records: 2, want: []uint32{1, 0}},
		{name: "at the bound", bound: 3, records: 3, want: []uint32{2, 1, 0}},
		{name: "past the bound", bound: 3, records: 10, want: []uint32{9, 8, 7}},
		{name: "bound of one", bound: 1, records: 4, want: []uint32{3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(testtmp.Dir(t), "state.db")
			db, err := Open(path, Options{Clock: clock.NewFake(epoch)})
			require.NoError(t, err)
			db.maxHistory = tt.bound
			for v := range tt.records {
				require.NoError(t, db.Record(Transition{Channel: 1, Version: uint32(v)}))
			}
			got, err := db.History(0)
			require.NoError(t, err)
			assert.Equal(t, tt.want, versions(got))
			require.NoError(t, db.Close())

			// The bound holds on disk, not only in what History returns.
			db, err = Open(path, Options{ReadOnly: true})
			require.NoError(t, err)
			defer db.Close()
			n := 0
			require.NoError(t, db.bolt.View(func(tx *bboltTx) error {
				n = tx.Bucket(bucketHistory).Stats().KeyN
				return nil
			}))
			assert.Equal(t, len(tt.want), n)
		})
	}
}

func TestReasonIsCut(t *testing.T) {
	tests := []struct {
		name   string
		reason string
		want   string
	}{
		{name: "short", reason: "crash while loading", want: "crash while loading"},
		{name: "at the limit", reason: strings.Repeat("x", MaxReasonLen), want: strings.Repeat("x", MaxReasonLen)},
		{name: "long", reason: strings.Repeat("x", 5000), want: strings.Repeat("x", MaxReasonLen)},
		// "é" is two bytes; the limit falls inside the last one.
		{name: "utf-8 boundary", reason: "x" + strings.Repeat("é", MaxReasonLen), want: "x" + strings.Repeat("é", (MaxReasonLen-1)/2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, _ := openTest(t)
			require.NoError(t, db.Record(Transition{Reason: tt.reason}))
			require.NoError(t, db.Quarantine(Quarantine{Reason: tt.reason}))

			h, err := db.History(1)
			require.NoError(t, err)
			assert.Equal(t, tt.want, h[0].Reason)
			q, err := db.Quarantined()
			require.NoError(t, err)
			assert.Equal(t, tt.want, q[0].Reason)
		})
	}
}

func TestQuarantine(t *testing.T) {
	db, clk := openTest(t)
	require.NoError(t, db.Quarantine(Quarantine{Channel: 291, Version: 7, Reason: "crash while loading"}))
	clk.Set(epoch.Add(time.Hour))
	require.NoError(t, db.Quarantine(Quarantine{Channel: 291, Version: 5, Reason: "tries used up"}))
	require.NoError(t, db.Quarantine(Quarantine{Channel: 12, Version: 9, Reason: "rejected", Time: epoch.Add(-time.Hour)}))

	tests := []struct {
		channel, version uint32
		want             bool
	}{
		{291, 7, true},
		{291, 5, true},
		{12, 9, true},
		{291, 6, false},
		{12, 7, false},
		{7, 291, false}, // channel and version are not interchangeable
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%d", tt.channel, tt.version), func(t *testing.T) {
			got, err := db.IsQuarantined(tt.channel, tt.version)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}

	list, err := db.Quarantined()
	require.NoError(t, err)
	assert.Equal(t, []Quarantine{
		{Channel: 12, Version: 9, Reason: "rejected", Time: epoch.Add(-time.Hour)},
		{Channel: 291, Version: 5, Reason: "tries used up", Time: epoch.Add(time.Hour)},
		{Channel: 291, Version: 7, Reason: "crash while loading", Time: epoch},
	}, list, "ordered by channel, then version; zero times from the clock")

	// Quarantining again replaces the entry.
	require.NoError(t, db.Quarantine(Quarantine{Channel: 291, Version: 7, Reason: "crashed again"}))
	list, err = db.Quarantined()
	require.NoError(t, err)
	require.Len(t, list, 3)
	assert.Equal(t, "crashed again", list[2].Reason)

	// Unquarantine removes exactly one entry and is idempotent.
	require.NoError(t, db.Unquarantine(291, 7))
	require.NoError(t, db.Unquarantine(291, 7))
	got, err := db.IsQuarantined(291, 7)
	require.NoError(t, err)
	assert.False(t, got)
	got, err = db.IsQuarantined(291, 5)
	require.NoError(t, err)
	assert.True(t, got)
}

func TestQuarantineBound(t *testing.T) {
	assert.Equal(t, 10_000, MaxQuarantined, "the default bound")
	db, _ := openTest(t)
	db.maxQuarantined = 3
	// Times out of insertion order: the oldest by time goes, not the first
	// inserted.
	for _, q := range []Quarantine{
		{Channel: 1, Version: 1, Time: epoch.Add(2 * time.Hour)},
		{Channel: 1, Version: 2, Time: epoch},
		{Channel: 1, Version: 3, Time: epoch.Add(3 * time.Hour)},
		{Channel: 1, Version: 4, Time: epoch.Add(time.Hour)},
	} {
		require.NoError(t, db.Quarantine(q))
	}
	list, err := db.Quarantined()
	require.NoError(t, err)
	var got []uint32
	for _, q := range list {
		got = append(got, q.Version)
	}
	assert.Equal(t, []uint32{1, 3, 4}, got)
}

func TestPins(t *testing.T) {
	db, _ := openTest(t)

	_, ok, err := db.Pin(291)
	require.NoError(t, err)
	assert.False(t, ok, "not pinned yet")

	require.NoError(t, db.SetPin(291, 7))
	require.NoError(t, db.SetPin(12, 3))
	require.NoError(t, db.SetPin(291, 6)) // replaces

	v, ok, err := db.Pin(291)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, uint32(6), v)

	pins, err := db.Pins()
	require.NoError(t, err)
	assert.Equal(t, map[uint32]uint32{291: 6, 12: 3}, pins)

	require.NoError(t, db.ClearPin(291))
	require.NoError(t, db.ClearPin(291), "clearing twice is fine")
	_, ok, err = db.Pin(291)
	require.NoError(t, err)
	assert.False(t, ok)
	v, ok, err = db.Pin(12)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, uint32(3), v)
}

func TestPinBound(t *testing.T) {
	db, _ := openTest(t)
	db.maxPins = 2
	require.NoError(t, db.SetPin(1, 1))
	require.NoError(t, db.SetPin(2, 1))
	require.ErrorIs(t, db.SetPin(3, 1), ErrFull)
	require.NoError(t, db.SetPin(2, 5), "replacing a pin is always possible")
	require.NoError(t, db.ClearPin(1))
	require.NoError(t, db.SetPin(3, 1), "a cleared pin frees its place")
}

func TestPersistsAcrossReopen(t *testing.T) {
	path := filepath.Join(testtmp.Dir(t), "state.db")
	clk := clock.NewFake(epoch)
	db, err := Open(path, Options{Clock: clk})
	require.NoError(t, err)
	require.NoError(t, db.Record(Transition{Channel: 291, Version: 2, Slot: "b", From: "trial", To: "bad", Reason: "crash while loading"}))
	require.NoError(t, db.Quarantine(Quarantine{Channel: 291, Version: 2, Reason: "crash while loading"}))
	require.NoError(t, db.SetPin(291, 1))
	require.NoError(t, db.Close())

	for _, readOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("read-only=%v", readOnly), func(t *testing.T) {
			db, err := Open(path, Options{ReadOnly: readOnly, Clock: clk})
			require.NoError(t, err)
			defer db.Close()
			h, err := db.History(0)
			require.NoError(t, err)
			assert.Equal(t, []Transition{{Time: epoch, Channel: 291, Version: 2, Slot: "b", From: "trial", To: "bad", Reason: "crash while loading"}}, h)
			q, err := db.IsQuarantined(291, 2)
			require.NoError(t, err)
			assert.True(t, q)
			v, ok, err := db.Pin(291)
			require.NoError(t, err)
			assert.True(t, ok)
			assert.Equal(t, uint32(1), v)
		})
	}
}

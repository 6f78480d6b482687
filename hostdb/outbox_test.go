package hostdb

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/wire"
)

func TestOutboxOrderAckReopen(t *testing.T) {
	path := filepath.Join(testtmp.Dir(t), "state.db")
	clk := clock.NewFake(epoch)
	db, err := Open(path, Options{Clock: clk})
	require.NoError(t, err)
	var ids []string
	for i := range 5 {
		clk.Set(epoch.Add(time.Duration(i) * time.Second))
		ev, err := db.Enqueue(wire.Event{Kind: wire.EventInstalled, Version: uint32(1000 + i), Reason: strings.Repeat("r", 2*wire.MaxReasonLen)})
		require.NoError(t, err)
		require.Len(t, ev.ID, 32, "a random id is made")
		require.Len(t, ev.Reason, wire.MaxReasonLen)
		ids = append(ids, ev.ID)
	}
	got, err := db.Pending(3)
	require.NoError(t, err)
	require.Len(t, got, 3)
	for i, ev := range got {
		require.Equal(t, ids[i], ev.ID, "oldest first")
		require.Equal(t, epoch.Add(time.Duration(i)*time.Second), ev.Time)
	}
	require.NoError(t, db.Ack([]string{ids[0], ids[2], "unknown"}))
	require.NoError(t, db.Close())

	db, err = Open(path, Options{Clock: clk})
	require.NoError(t, err)
	defer db.Close()
	got, err = db.Pending(10)
	require.NoError(t, err)
	var left []string
	for _, ev := range got {
		left = append(left, ev.ID)
	}
	require.Equal(t, []string{ids[1], ids[3], ids[4]}, left, "acks survive a reopen, the rest stays queued")
	st, err := db.OutboxStats()
	require.NoError(t, err)
	require.Equal(t, 3, st.Queued)
	require.Equal(t, epoch.Add(time.Second), st.Oldest)
}

// TestOutboxWeeksOffline: a host offline for weeks queues far more
// heartbeats than the bound; the outbox stays bounded, evicts heartbeats
// first and never drops a revert.
func TestOutboxWeeksOffline(t *testing.T) {
	db, _ := openTest(t)
	db.maxOutbox = 200 // the rule, at a size a test can fill (every enqueue is a synced commit)
	var reverts []string
	for i := range 2 * db.maxOutbox {
		if i%20 == 10 {
			ev, err := db.Enqueue(wire.Event{Kind: wire.EventReverted, Version: uint32(i), Critical: true})
			require.NoError(t, err)
			reverts = append(reverts, ev.ID)
		}
		if i == 5 {
			_, err := db.Enqueue(wire.Event{Kind: wire.EventInstalled, Version: 7})
			require.NoError(t, err)
		}
		_, err := db.Enqueue(wire.Event{Kind: wire.EventHeartbeat})
		require.NoError(t, err)
	}
	st, err := db.OutboxStats()
	require.NoError(t, err)
	require.LessOrEqual(t, st.Queued, db.maxOutbox)
	require.Equal(t, len(reverts), st.Critical)
	require.Positive(t, st.Dropped)
	all, err := db.Pending(2 * db.maxOutbox)
	require.NoError(t, err)
	seen := map[string]bool{}
	installed := false
	for _, ev := range all {
		seen[ev.ID] = true
		installed = installed || ev.Kind == wire.EventInstalled
	}
	for _, id := range reverts {
		require.True(t, seen[id], "revert %s was evicted", id)
	}
	require.True(t, installed, "heartbeats go before other events")
}

// TestOutboxFullOfCritical: critical events exceed the bound rather than be
// lost, up to the hard cap; non-critical ones are refused and counted there.
func TestOutboxFullOfCritical(t *testing.T) {
	db, _ := openTest(t)
	db.maxOutbox = 50
	for i := range 2 * db.maxOutbox {
		_, err := db.Enqueue(wire.Event{Kind: wire.EventReverted, ID: fmt.Sprint(i), Critical: true})
		require.NoError(t, err)
	}
	_, err := db.Enqueue(wire.Event{Kind: wire.EventHeartbeat})
	require.NoError(t, err)
	st, err := db.OutboxStats()
	require.NoError(t, err)
	require.Equal(t, 2*db.maxOutbox, st.Queued)
	require.Equal(t, 2*db.maxOutbox, st.Critical)
	require.Equal(t, uint64(1), st.Dropped)
}

// TestOutboxSeq: every event's seq is above the one before, even when the
// clock goes back, and a fresh database (state.db lost) starts above the
// old one's numbers while the clock did not go back.
func TestOutboxSeq(t *testing.T) {
	clk := clock.NewFake(epoch)
	db, err := Open(filepath.Join(testtmp.Dir(t), "state.db"), Options{Clock: clk})
	require.NoError(t, err)
	defer db.Close()
	var last uint64
	for i := range 20 {
		if i == 10 {
			clk.Set(epoch.Add(-time.Hour)) // the clock goes back
		}
		ev, err := db.Enqueue(wire.Event{Kind: wire.EventHeartbeat})
		require.NoError(t, err)
		require.Greater(t, ev.Seq, last)
		last = ev.Seq
	}
	got, err := db.Pending(100)
	require.NoError(t, err)
	require.Equal(t, last, got[19].Seq, "Pending gives each event its seq")

	clk.Set(epoch.Add(time.Minute))
	fresh, err := Open(filepath.Join(testtmp.Dir(t), "state.db"), Options{Clock: clk})
	require.NoError(t, err)
	defer fresh.Close()
	ev, err := fresh.Enqueue(wire.Event{Kind: wire.EventHeartbeat})
	require.NoError(t, err)
	require.Greater(t, ev.Seq, last)
}

// TestOutboxDeterministicIDsOnce: an event given its own id is queued once,
// also after it was sent, so a restarted daemon does not report a revert
// twice; the remembered ids are bounded.
func TestOutboxDeterministicIDsOnce(t *testing.T) {
	db, _ := openTest(t)
	revert := wire.Event{ID: "reverted-291-1004-load-crash", Kind: wire.EventReverted, Critical: true}
	_, err := db.Enqueue(revert)
	require.NoError(t, err)
	again, err := db.Enqueue(revert)
	require.NoError(t, err)
	require.Zero(t, again.Seq, "not queued again: no seq")
	got, err := db.Pending(10)
	require.NoError(t, err)
	require.Len(t, got, 1, "queued once")
	require.NoError(t, db.Ack([]string{revert.ID}))
	_, err = db.Enqueue(revert)
	require.NoError(t, err)
	got, err = db.Pending(10)
	require.NoError(t, err)
	require.Empty(t, got, "sent once")

	for i := range MaxOutboxIDs {
		_, err := db.Enqueue(wire.Event{ID: fmt.Sprintf("id-%d", i), Kind: wire.EventReverted})
		require.NoError(t, err)
	}
	_, err = db.Enqueue(revert)
	require.NoError(t, err)
	got, err = db.Pending(2 * MaxOutboxIDs)
	require.NoError(t, err)
	require.Len(t, got, MaxOutboxIDs+1, "the oldest id was forgotten past the bound")
}

package state

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/testtmp"
)

func TestOutboxOrderAckReopen(t *testing.T) {
	path := filepath.Join(testtmp.Dir(t), "state.db")
	clock := &fakeClock{now: epoch}
	db, err := Open(path, Options{Clock: clock})
	require.NoError(t, err)
	var ids []string
	for i := range 5 {
		clock.now = epoch.Add(time.Duration(i) * time.Second)
		ev, err := db.Enqueue(OutboxEvent{Type: "installed", Version: uint32(1000 + i), Reason: strings.Repeat("r", 2*MaxReasonLen)})
		require.NoError(t, err)
		require.Len(t, ev.ID, 32, "a random id is made")
		require.Len(t, ev.Reason, MaxReasonLen)
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

	db, err = Open(path, Options{Clock: clock})
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
			ev, err := db.Enqueue(OutboxEvent{Type: "reverted", Version: uint32(i), Critical: true})
			require.NoError(t, err)
			reverts = append(reverts, ev.ID)
		}
		if i == 5 {
			_, err := db.Enqueue(OutboxEvent{Type: "installed", Version: 7})
			require.NoError(t, err)
		}
		_, err := db.Enqueue(OutboxEvent{Type: "heartbeat"})
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
		installed = installed || ev.Type == "installed"
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
		_, err := db.Enqueue(OutboxEvent{Type: "reverted", ID: fmt.Sprint(i), Critical: true})
		require.NoError(t, err)
	}
	_, err := db.Enqueue(OutboxEvent{Type: "heartbeat"})
	require.NoError(t, err)
	st, err := db.OutboxStats()
	require.NoError(t, err)
	require.Equal(t, 2*db.maxOutbox, st.Queued)
	require.Equal(t, 2*db.maxOutbox, st.Critical)
	require.Equal(t, uint64(1), st.Dropped)
}

package fleetpg

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/internal/pgtest"
)

func batch(host, body string) InboxItem {
	return InboxItem{HostID: host, Body: []byte(body), Signature: "ed25519=" + body, ReceivedBy: "replica-x"}
}

func inboxIDs(t *testing.T, db *DB) []int64 {
	t.Helper()
	items, err := db.Inbox(ctxFor(t), MaxInboxRead)
	require.NoError(t, err)
	var ids []int64
	for _, it := range items {
		ids = append(ids, it.ID)
	}
	return ids
}

func inboxLen(t *testing.T, db *DB) int {
	t.Helper()
	n, err := db.InboxLen(ctxFor(t))
	require.NoError(t, err)
	return n
}

// TestPGInboxEnqueue: a batch is stored once per host and body, read back
// oldest first with what the database set; the inputs are bounded; a
// follower, or a server using the database alone, enqueues without a
// lease.
func TestPGInboxEnqueue(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	db := openReplicaT(t, dsn, Options{MaxInboxBody: 64})
	conn := testConn(t, dsn)

	dup, err := db.Enqueue(ctxFor(t), batch("host-1", "one"))
	require.NoError(t, err)
	require.False(t, dup)
	dup, err = db.Enqueue(ctxFor(t), batch("host-1", "one"))
	require.NoError(t, err)
	require.True(t, dup, "the same batch again: no new row")
	dup, err = db.Enqueue(ctxFor(t), batch("host-2", "one"))
	require.NoError(t, err)
	require.False(t, dup, "the same body from another host is another batch")
	dup, err = db.Enqueue(ctxFor(t), InboxItem{HostID: "host-1"})
	require.NoError(t, err)
	require.False(t, dup, "an empty body is stored as it is")
	require.Equal(t, 3, inboxLen(t, db))

	var now time.Time
	require.NoError(t, conn.QueryRow(ctxFor(t), "SELECT clock_timestamp()").Scan(&now))
	items, err := db.Inbox(ctxFor(t), 2)
	require.NoError(t, err)
	require.Len(t, items, 2)
	require.Less(t, items[0].ID, items[1].ID)
	it := items[0]
	require.Equal(t, "host-1", it.HostID)
	require.Equal(t, []byte("one"), it.Body)
	require.Equal(t, "ed25519=one", it.Signature)
	require.Equal(t, "replica-x", it.ReceivedBy)
	require.WithinDuration(t, now, it.ReceivedAt, 10*time.Second, "by the database's clock")
	require.Equal(t, "host-2", items[1].HostID)
	var digest []byte
	require.NoError(t, conn.QueryRow(ctxFor(t), "SELECT digest FROM telemetry_inbox WHERE id = $1", it.ID).Scan(&digest))
	sum := sha256.Sum256([]byte("one"))
	require.Equal(t, sum[:], digest)

	for _, bad := range []InboxItem{
		{HostID: "", Body: []byte("x")},
		{HostID: strings.Repeat("h", maxHostID+1), Body: []byte("x")},
		{HostID: "host\x00", Body: []byte("x")},
		{HostID: "host-\xff", Body: []byte("x")},
		{HostID: "host-1", Body: make([]byte, 65)},
		{HostID: "host-1", Body: []byte("x"), Signature: strings.Repeat("s", maxInboxSignature+1)},
		{HostID: "host-1", Body: []byte("x"), ReceivedBy: strings.Repeat("r", maxInboxName+1)},
	} {
		_, err := db.Enqueue(ctxFor(t), bad)
		require.Error(t, err, "%.80q", bad.HostID)
	}
	_, err = db.Inbox(ctxFor(t), 0)
	require.Error(t, err)
	require.Equal(t, 3, inboxLen(t, db))

	alone := pgtest.Start(t).NewDatabase(t)
	x, err := Open(ctxFor(t), alone, Options{Timeout: 5 * time.Second})
	require.NoError(t, err)
	defer x.Close()
	_, err = x.Enqueue(ctxFor(t), batch("host-1", "one"))
	require.NoError(t, err, "no lease needed")
	ro, err := Open(ctxFor(t), alone, Options{ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	_, err = ro.Enqueue(ctxFor(t), batch("host-1", "two"))
	require.ErrorIs(t, err, ErrReadOnly)
	require.NoError(t, x.Close())
	_, err = x.Enqueue(ctxFor(t), batch("host-1", "three"))
	require.ErrorIs(t, err, errClosed)
}

// TestPGInboxFull: Enqueue refuses at MaxInbox rows, and takes batches
// again once the leader consumed some.
func TestPGInboxFull(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	leader := openReplicaT(t, dsn, Options{})
	follower := openReplicaT(t, dsn, Options{MaxInbox: 3})
	lead(t, leader, "replica-a", longTTL)

	for i := range 3 {
		_, err := follower.Enqueue(ctxFor(t), batch("host-1", fmt.Sprint(i)))
		require.NoError(t, err)
	}
	_, err := follower.Enqueue(ctxFor(t), batch("host-1", "3"))
	require.ErrorIs(t, err, ErrInboxFull)
	require.ErrorContains(t, err, "leader is not applying it")
	require.Equal(t, 3, inboxLen(t, follower))

	// Its count is a second old at most; this test does not wait.
	follower.inboxCount.mu.Lock()
	follower.inboxCount.every = -1
	follower.inboxCount.mu.Unlock()
	ids := inboxIDs(t, leader)
	require.NoError(t, leader.CommitConsumed(controller.Changes{}, noRecords, ids[:2]))
	_, err = follower.Enqueue(ctxFor(t), batch("host-1", "3"))
	require.NoError(t, err)
	_, err = follower.Enqueue(ctxFor(t), batch("host-1", "4"))
	require.NoError(t, err)
	_, err = follower.Enqueue(ctxFor(t), batch("host-1", "5"))
	require.ErrorIs(t, err, ErrInboxFull)
}

// TestPGInboxStrangers: batches of keys not in the fleet fill a quarter of
// the inbox at most; the fleet's hosts keep the rest.
func TestPGInboxStrangers(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	db := openReplicaT(t, dsn, Options{MaxInbox: 8})
	db.inboxCount.mu.Lock()
	db.inboxCount.every = -1 // count at every call
	db.inboxCount.mu.Unlock()
	stranger := func(body string) InboxItem {
		it := batch(fmt.Sprintf("new-key-%s", body), body)
		it.Stranger = true
		return it
	}
	for i := range 2 {
		_, err := db.Enqueue(ctxFor(t), stranger(fmt.Sprint(i)))
		require.NoError(t, err)
	}
	_, err := db.Enqueue(ctxFor(t), stranger("2"))
	require.ErrorIs(t, err, ErrInboxFull)
	require.ErrorContains(t, err, "keys not in the fleet")
	for i := range 6 {
		_, err := db.Enqueue(ctxFor(t), batch("host-1", fmt.Sprint(i)))
		require.NoError(t, err, "the fleet's hosts still have room: batch %d", i)
	}
	_, err = db.Enqueue(ctxFor(t), batch("host-1", "6"))
	require.ErrorIs(t, err, ErrInboxFull)
	require.Equal(t, 8, inboxLen(t, db))
}

// TestPGInboxConcurrent: many handlers enqueue at once, while the DB's
// own connection is busy (its mutex held, as during a commit): every
// batch is stored once.
func TestPGInboxConcurrent(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	db := openReplicaT(t, dsn, Options{})
	const workers, each = 8, 50

	db.mu.Lock() // Enqueue must not need it
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*2)
	dups := make(chan bool, workers*each*2)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				it := batch(fmt.Sprintf("host-%d", w), fmt.Sprintf("batch %d", i))
				for range 2 { // each batch twice: a host resending
					dup, err := db.Enqueue(ctxFor(t), it)
					errs <- err
					dups <- dup
				}
			}
		})
	}
	wg.Wait()
	db.mu.Unlock()
	close(errs)
	close(dups)
	for err := range errs {
		require.NoError(t, err)
	}
	n := 0
	for dup := range dups {
		if dup {
			n++
		}
	}
	require.Equal(t, workers*each, n, "every second enqueue of a batch is a dup")
	require.Equal(t, workers*each, inboxLen(t, db))
	var distinct int
	require.NoError(t, testConn(t, dsn).QueryRow(ctxFor(t), "SELECT count(DISTINCT (host_id, body)) FROM telemetry_inbox").Scan(&distinct))
	require.Equal(t, workers*each, distinct)
}

// TestPGInboxCommitConsumed: the leader deletes exactly the rows it
// consumed, in the transaction of their effects; a leader fenced out
// deletes nothing and stores nothing, and the next leader finds the rows.
func TestPGInboxCommitConsumed(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	conn := testConn(t, dsn)
	a := openReplicaT(t, dsn, Options{})
	b := openReplicaT(t, dsn, Options{})
	for i := range 5 {
		_, err := b.Enqueue(ctxFor(t), batch("host-1", fmt.Sprint(i)))
		require.NoError(t, err)
	}
	all := inboxIDs(t, a)
	require.Len(t, all, 5)

	require.ErrorIs(t, a.CommitConsumed(controller.Changes{}, noRecords, all[:1]), ErrNotLeader)
	lead(t, a, "replica-a", longTTL)
	items, err := a.Inbox(ctxFor(t), 3)
	require.NoError(t, err)
	require.Len(t, items, 3)
	consumed := []int64{items[0].ID, items[1].ID, items[2].ID}
	require.Equal(t, all[:3], consumed, "oldest first")
	require.NoError(t, a.CommitConsumed(someHosts("h-1"), noRecords, consumed))
	require.Equal(t, all[3:], inboxIDs(t, a), "exactly the consumed rows are gone")
	require.Equal(t, []string{"h-1"}, storedHosts(t, dsn), "with the state change")

	seq, _ := commitSeq(t, conn)
	require.NoError(t, a.CommitConsumed(controller.Changes{}, noRecords, all[3:4]), "batches that changed nothing")
	require.Equal(t, all[4:], inboxIDs(t, a))
	seq2, _ := commitSeq(t, conn)
	require.Equal(t, seq+1, seq2, "a commit of its own")
	require.NoError(t, a.CommitConsumed(controller.Changes{}, noRecords, all[:1]), "ids no longer there are ignored")

	// a is fenced out (its lease ended by the database's clock, b took
	// over): its commit deletes nothing and stores nothing.
	_, err = conn.Exec(ctxFor(t), "UPDATE leader_lease SET expires_at = clock_timestamp()")
	require.NoError(t, err)
	lead(t, b, "replica-b", longTTL)
	err = a.CommitConsumed(someHosts("h-2"), noRecords, all[4:])
	require.ErrorIs(t, err, ErrLeaseLost)
	require.Equal(t, all[4:], inboxIDs(t, b))
	require.Equal(t, []string{"h-1"}, storedHosts(t, dsn))
	require.NoError(t, b.CommitConsumed(someHosts("h-2"), noRecords, all[4:]))
	require.Empty(t, inboxIDs(t, b))
	require.Equal(t, []string{"h-1", "h-2"}, storedHosts(t, dsn))

	err = b.CommitConsumed(controller.Changes{}, noRecords, make([]int64, MaxConsumed+1))
	require.ErrorContains(t, err, "commit fewer at a time")
}

// TestPGInboxLateCommit: ids do not commit in their order. A row whose
// transaction began first (a lower id) commits after a higher one was
// read and consumed; the next Inbox returns it: consumption by deletion
// skips nothing.
func TestPGInboxLateCommit(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	db := openReplicaT(t, dsn, Options{})
	lead(t, db, "replica-a", longTTL)
	slow := testConn(t, dsn)
	tx1, err := slow.Begin(ctxFor(t))
	require.NoError(t, err)
	defer tx1.Rollback(ctxFor(t))
	sum := sha256.Sum256([]byte("late"))
	var late int64
	require.NoError(t, tx1.QueryRow(ctxFor(t), `INSERT INTO telemetry_inbox (host_id, digest, body, signature, received_by)
VALUES ('host-1', $1, 'late', '', 'replica-slow') RETURNING id`, sum[:]).Scan(&late))

	_, err = db.Enqueue(ctxFor(t), batch("host-2", "early"))
	require.NoError(t, err)
	items, err := db.Inbox(ctxFor(t), 10)
	require.NoError(t, err)
	require.Len(t, items, 1, "the uncommitted row is not visible")
	require.Greater(t, items[0].ID, late)
	require.NoError(t, db.CommitConsumed(controller.Changes{}, noRecords, []int64{items[0].ID}))

	require.NoError(t, tx1.Commit(ctxFor(t)))
	items, err = db.Inbox(ctxFor(t), 10)
	require.NoError(t, err)
	require.Len(t, items, 1)
	require.Equal(t, late, items[0].ID, "the late row, with its lower id, is read now")
	require.Equal(t, []byte("late"), items[0].Body)
}

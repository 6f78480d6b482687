package fleetpg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/internal/await"
	"github.com/ringfence/ringfence/internal/pgtest"
)

// The lease's tests are inside the package: they reach cutProxy, and
// inbox_test.go sets the inbox's count interval.

// shortTTL is a lease that expires within a test: the tests that need one
// wait for it by the database's clock (awaitExpiry).
const shortTTL = 300 * time.Millisecond

// longTTL is a lease that does not expire within a test.
const longTTL = time.Minute

// openReplicaT opens dsn as a replica and closes it when t ends.
func openReplicaT(t *testing.T, dsn string, opts Options) *DB {
	t.Helper()
	opts.Replica = true
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	db, err := Open(ctxFor(t), dsn, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// testConn is a connection of the test's own, to look at the database
// behind the DB's back.
func testConn(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctxFor(t), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// lead acquires the lease for holder and loads: ready to commit.
func lead(t *testing.T, db *DB, holder string, ttl time.Duration) Lease {
	t.Helper()
	l, err := db.Acquire(ctxFor(t), holder, ttl)
	require.NoError(t, err)
	_, err = db.Load()
	require.NoError(t, err)
	return l
}

// awaitExpiry waits until the lease row has expired by the database's
// clock, which judges it: the only waiting the tests do.
func awaitExpiry(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	await.Until(t, 10*time.Second, 20*time.Millisecond, func() error {
		var expired bool
		require.NoError(t, conn.QueryRow(ctxFor(t), "SELECT expires_at <= clock_timestamp() FROM leader_lease").Scan(&expired))
		if !expired {
			return errors.New("expires_at is still ahead of clock_timestamp()")
		}
		return nil
	}, "the lease did not expire")
}

// commitSeq is commit_seq's (seq, epoch).
func commitSeq(t *testing.T, conn *pgx.Conn) (seq, epoch int64) {
	t.Helper()
	require.NoError(t, conn.QueryRow(ctxFor(t), "SELECT seq, epoch FROM commit_seq").Scan(&seq, &epoch))
	return seq, epoch
}

func loadedHosts(t *testing.T, db *DB) []string {
	t.Helper()
	st, err := db.Load()
	require.NoError(t, err)
	var ids []string
	for _, h := range st.Hosts {
		ids = append(ids, h.ID)
	}
	return ids
}

var noRecords admission.Changes

// TestPGLeaseAcquireLoadCommit: a replica commits only with the lease, and
// only after loading under it; a second replica is refused the lease,
// told whose it is, and cannot commit.
func TestPGLeaseAcquireLoadCommit(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	conn := testConn(t, dsn)
	a := openReplicaT(t, dsn, Options{})

	require.ErrorIs(t, a.Commit(someHosts("h-0"), noRecords), ErrNotLeader, "no lease, no commit")
	_, err := a.Leader(ctxFor(t))
	require.ErrorIs(t, err, ErrNoLeader)

	before := time.Now()
	l, err := a.Acquire(ctxFor(t), "replica-a", longTTL)
	require.NoError(t, err)
	require.Equal(t, "replica-a", l.Holder)
	require.Equal(t, int64(1), l.Epoch, "the first lease of a database")
	require.WithinRange(t, l.Deadline, before.Add(longTTL), time.Now().Add(longTTL))
	var dbExpires time.Time
	require.NoError(t, conn.QueryRow(ctxFor(t), "SELECT expires_at FROM leader_lease").Scan(&dbExpires))
	require.True(t, l.Expires.Equal(dbExpires))
	got, ok := a.Lease()
	require.True(t, ok)
	require.Equal(t, l, got)

	err = a.Commit(someHosts("h-0"), noRecords)
	require.ErrorIs(t, err, ErrStale, "a new epoch: Load first")
	require.ErrorContains(t, err, "nothing stored")
	require.Empty(t, storedHosts(t, dsn))
	require.Empty(t, loadedHosts(t, a))
	require.NoError(t, a.Commit(someHosts("h-1"), noRecords))
	require.Equal(t, []string{"h-1"}, storedHosts(t, dsn))
	seq, epoch := commitSeq(t, conn)
	require.Equal(t, int64(1), seq)
	require.Equal(t, int64(1), epoch, "commit_seq records the epoch the commit ran under")
	require.NoError(t, a.Commit(controller.Changes{}, noRecords), "nothing to store")

	// Acquire by the holder renews: the same epoch, no Load needed.
	again, err := a.Acquire(ctxFor(t), "replica-a", longTTL)
	require.NoError(t, err)
	require.Equal(t, l.Epoch, again.Epoch)
	require.False(t, again.Expires.Before(l.Expires))
	require.NoError(t, a.Commit(someHosts("h-2"), noRecords))

	b := openReplicaT(t, dsn, Options{})
	_, err = b.Acquire(ctxFor(t), "replica-b", longTTL)
	require.ErrorIs(t, err, ErrLeaseHeld)
	var held *LeaseHeldError
	require.ErrorAs(t, err, &held)
	require.Equal(t, "replica-a", held.Holder)
	require.Equal(t, int64(1), held.Epoch)
	require.Greater(t, held.Remaining, longTTL-10*time.Second)
	require.LessOrEqual(t, held.Remaining, longTTL)
	require.ErrorContains(t, err, `replica "replica-a" holds the leader lease (epoch 1)`)
	_, ok = b.Lease()
	require.False(t, ok)
	require.ErrorIs(t, b.Commit(someHosts("h-b"), noRecords), ErrNotLeader)
	_, err = b.Renew(ctxFor(t), l)
	require.ErrorIs(t, err, ErrLeaseLost, "b does not hold a's lease")
	who, err := b.Leader(ctxFor(t))
	require.NoError(t, err)
	require.Equal(t, "replica-a", who.Holder)
	require.Equal(t, int64(1), who.Epoch)
	require.Equal(t, []string{"h-1", "h-2"}, storedHosts(t, dsn))

	// Bounded inputs, and the lease is a replica's.
	_, err = a.Acquire(ctxFor(t), "", longTTL)
	require.Error(t, err)
	_, err = a.Acquire(ctxFor(t), string(make([]byte, maxHolder+1)), longTTL)
	require.Error(t, err)
	_, err = a.Acquire(ctxFor(t), "replica-a", 0)
	require.Error(t, err)
	_, err = a.Acquire(ctxFor(t), "replica-a", MaxLeaseTTL+time.Second)
	require.Error(t, err)
	alone, err := Open(ctxFor(t), pgtest.Start(t).NewDatabase(t), Options{Timeout: 5 * time.Second})
	require.NoError(t, err)
	defer alone.Close()
	_, err = alone.Acquire(ctxFor(t), "x", longTTL)
	require.ErrorIs(t, err, ErrNotReplica)
	require.ErrorIs(t, alone.CommitConsumed(controller.Changes{}, noRecords, []int64{1}), ErrNotReplica)
	_, err = Open(ctxFor(t), dsn, Options{Replica: true, ReadOnly: true})
	require.Error(t, err)
}

// TestPGLeasePausedLeader: a leader that stops renewing (paused) loses the
// lease when it expires; another replica takes over, with the next epoch,
// loads what the first committed and commits; the first one's commit when
// it wakes up fails with ErrLeaseLost and stores nothing, even while its
// own clock says the lease is live.
func TestPGLeasePausedLeader(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	conn := testConn(t, dsn)
	a := openReplicaT(t, dsn, Options{})
	b := openReplicaT(t, dsn, Options{})

	la := lead(t, a, "replica-a", shortTTL)
	require.NoError(t, a.Commit(someHosts("h-a1"), noRecords))
	awaitExpiry(t, conn) // a is paused: no Renew

	lb, err := b.Acquire(ctxFor(t), "replica-b", longTTL)
	require.NoError(t, err)
	require.Equal(t, la.Epoch+1, lb.Epoch)
	require.ErrorIs(t, b.Commit(someHosts("h-b0"), noRecords), ErrStale)
	require.Equal(t, []string{"h-a1"}, loadedHosts(t, b), "the new leader loads the old one's commits")
	require.NoError(t, b.Commit(someHosts("h-b1"), noRecords))

	err = a.Commit(someHosts("h-a2"), noRecords) // a wakes up
	require.ErrorIs(t, err, ErrLeaseLost)
	require.ErrorIs(t, err, ErrNotLeader)
	require.ErrorContains(t, err, "nothing stored")
	_, ok := a.Lease()
	require.False(t, ok)
	require.ErrorIs(t, a.Commit(someHosts("h-a3"), noRecords), ErrNotLeader)
	_, err = a.Renew(ctxFor(t), la)
	require.ErrorIs(t, err, ErrLeaseLost)
	_, err = a.Acquire(ctxFor(t), "replica-a", longTTL)
	require.ErrorIs(t, err, ErrLeaseHeld)
	require.Equal(t, []string{"h-a1", "h-b1"}, storedHosts(t, dsn))
	seq, epoch := commitSeq(t, conn)
	require.Equal(t, int64(2), seq)
	require.Equal(t, lb.Epoch, epoch)

	// The fence judges by the database's clock alone: b's lease ends by
	// it (as if b had been paused for a minute) while b's own deadline
	// is still a minute away; b's commit is refused all the same.
	exec := func(q string) {
		_, err := conn.Exec(ctxFor(t), q)
		require.NoError(t, err)
	}
	exec("UPDATE leader_lease SET expires_at = clock_timestamp()")
	l, ok := b.Lease()
	require.True(t, ok)
	require.True(t, time.Now().Before(l.Deadline), "b's clock says it leads")
	require.ErrorIs(t, b.Commit(someHosts("h-b2"), noRecords), ErrLeaseLost)
	require.Equal(t, []string{"h-a1", "h-b1"}, storedHosts(t, dsn))

	// The row deleted by hand: a commit of the last holder is refused,
	// and the next epoch still goes up past every commit's (epoch 2,
	// b's last).
	lb = lead(t, b, "replica-b", longTTL)
	require.Equal(t, int64(3), lb.Epoch)
	exec("DELETE FROM leader_lease")
	require.ErrorIs(t, b.Commit(someHosts("h-b3"), noRecords), ErrLeaseLost)
	la = lead(t, a, "replica-a", longTTL)
	require.Equal(t, int64(3), la.Epoch)
	require.ErrorIs(t, b.Commit(someHosts("h-b3"), noRecords), ErrNotLeader)
	require.NoError(t, a.Commit(someHosts("h-a4"), noRecords))
	require.Equal(t, []string{"h-a1", "h-a4", "h-b1"}, storedHosts(t, dsn))
}

// TestPGLeaseRenew: Renew extends a live lease (the same epoch); an
// expired one it never revives, even when no one took it over, nor does a
// commit; the holder must Acquire again: a new epoch, and a Load.
func TestPGLeaseRenew(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	conn := testConn(t, dsn)
	a := openReplicaT(t, dsn, Options{})

	l := lead(t, a, "replica-a", shortTTL)
	r, err := a.Renew(ctxFor(t), l)
	require.NoError(t, err)
	require.Equal(t, l.Epoch, r.Epoch)
	require.True(t, r.Expires.After(l.Expires))
	require.True(t, r.Deadline.After(l.Deadline))
	require.NoError(t, a.Commit(someHosts("h-1"), noRecords), "a renewal needs no Load")

	awaitExpiry(t, conn)
	_, err = a.Renew(ctxFor(t), r)
	require.ErrorIs(t, err, ErrLeaseLost)
	require.ErrorContains(t, err, "expired or was taken over")
	var holder string
	var epoch int64
	require.NoError(t, conn.QueryRow(ctxFor(t), "SELECT holder, epoch FROM leader_lease").Scan(&holder, &epoch))
	require.Equal(t, "replica-a", holder, "no one took it over")
	_, ok := a.Lease()
	require.False(t, ok)

	l2, err := a.Acquire(ctxFor(t), "replica-a", shortTTL)
	require.NoError(t, err)
	require.Equal(t, l.Epoch+1, l2.Epoch, "an expired lease of one's own is taken over like anyone's")
	require.ErrorIs(t, a.Commit(someHosts("h-2"), noRecords), ErrStale)
	_, err = a.Load()
	require.NoError(t, err)

	awaitExpiry(t, conn)
	require.ErrorIs(t, a.Commit(someHosts("h-2"), noRecords), ErrLeaseLost, "the fence refuses an expired lease, taken over or not")
	require.Equal(t, []string{"h-1"}, storedHosts(t, dsn))
}

// TestPGLeaseRelease: Release, and Close, end the lease at once: another
// replica takes it over without waiting for it to expire.
func TestPGLeaseRelease(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	a := openReplicaT(t, dsn, Options{})
	b := openReplicaT(t, dsn, Options{})
	c := openReplicaT(t, dsn, Options{})

	la := lead(t, a, "replica-a", longTTL)
	require.NoError(t, a.Commit(someHosts("h-a"), noRecords))
	require.NoError(t, a.Release(ctxFor(t), la))
	_, ok := a.Lease()
	require.False(t, ok)
	require.ErrorIs(t, a.Commit(someHosts("h-a2"), noRecords), ErrNotLeader)
	_, err := a.Leader(ctxFor(t))
	require.ErrorIs(t, err, ErrNoLeader)

	lb := lead(t, b, "replica-b", longTTL)
	require.Equal(t, la.Epoch+1, lb.Epoch)
	require.ErrorIs(t, a.Release(ctxFor(t), la), ErrLeaseLost, "a released it already")
	require.NoError(t, b.Commit(someHosts("h-b"), noRecords))

	require.NoError(t, b.Close()) // releases
	lc := lead(t, c, "replica-c", longTTL)
	require.Equal(t, lb.Epoch+1, lc.Epoch)
	require.Equal(t, []string{"h-a", "h-b"}, loadedHosts(t, c))
	require.NoError(t, c.Commit(someHosts("h-c"), noRecords))
	who, err := a.Leader(ctxFor(t))
	require.NoError(t, err)
	require.Equal(t, "replica-c", who.Holder)
	require.Equal(t, []string{"h-a", "h-b", "h-c"}, storedHosts(t, dsn))
}

// TestPGLeaseExclusion: a server that uses the database alone and
// replicas exclude each other, whichever opens first; replicas share it.
func TestPGLeaseExclusion(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	short := 100 * time.Millisecond

	alone, err := Open(ctxFor(t), dsn, Options{Timeout: short})
	require.NoError(t, err)
	_, err = Open(ctxFor(t), dsn, Options{Timeout: short, Replica: true})
	require.ErrorIs(t, err, ErrLocked)
	require.ErrorContains(t, err, "uses it alone")
	require.NoError(t, alone.Close())

	a := openReplicaT(t, dsn, Options{Timeout: short})
	b := openReplicaT(t, dsn, Options{Timeout: short})
	_, err = Open(ctxFor(t), dsn, Options{Timeout: short})
	require.ErrorIs(t, err, ErrLocked)
	require.ErrorContains(t, err, "2 ringfence-server replicas share it")
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
	alone, err = Open(ctxFor(t), dsn, Options{Timeout: short})
	require.NoError(t, err, "the replicas let go at Close")
	require.NoError(t, alone.Commit(someHosts("h-alone"), noRecords))
	require.NoError(t, alone.Close())
}

// TestPGLeaseTakeoverRace: a leader commits as fast as it can while its
// lease runs out and another replica takes over; every commit it was told
// succeeded is in the new leader's Load, and nothing else of it is
// stored. The lease row's lock orders each commit before or after the
// takeover.
func TestPGLeaseTakeoverRace(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	a := openReplicaT(t, dsn, Options{})
	b := openReplicaT(t, dsn, Options{})
	lead(t, a, "replica-a", shortTTL)

	var committed []string
	var lost error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			id := fmt.Sprintf("h-a%04d", i)
			if err := a.Commit(someHosts(id), noRecords); err != nil {
				lost = err
				return
			}
			committed = append(committed, id)
		}
	}()
	await.Until(t, 10*time.Second, 5*time.Millisecond, func() error {
		_, err := b.Acquire(ctxFor(t), "replica-b", longTTL)
		if err != nil {
			require.ErrorIs(t, err, ErrLeaseHeld)
		}
		return err
	}, "b never took over")
	loaded := loadedHosts(t, b)
	<-done
	require.ErrorIs(t, lost, ErrLeaseLost)
	require.NotEmpty(t, committed)
	require.Equal(t, committed, loaded, "b's Load holds exactly a's successful commits")
	require.NoError(t, b.Commit(someHosts("h-b"), noRecords))
	require.Equal(t, append(slices.Clone(committed), "h-b"), storedHosts(t, dsn))
}

// TestPGReplicaRestart: the database restarts (immediate shutdown, as a
// crash) under replicas. The leader commits again after reconnecting, its
// lease live and unchanged; a replica whose lease ran out meanwhile and
// was taken over learns it from commit_seq and stores nothing; the inbox
// works again at once.
func TestPGReplicaRestart(t *testing.T) {
	cl := pgtest.NewCluster(t) // its own: a restart cuts every connection
	dsn := cl.NewDatabase(t)
	a := openReplicaT(t, dsn, Options{CommitTimeout: 5 * time.Second})
	b := openReplicaT(t, dsn, Options{CommitTimeout: 5 * time.Second})
	la := lead(t, a, "replica-a", longTTL)
	require.NoError(t, a.Commit(someHosts("h-1"), noRecords))
	_, err := b.Enqueue(ctxFor(t), InboxItem{HostID: "host-1", Body: []byte("before"), ReceivedBy: "replica-b"})
	require.NoError(t, err)

	cl.RestartImmediate(t)
	// The first commit meets the broken connection: it fails, nothing
	// stored, or (had the connection been replaced first) succeeds.
	if err := a.Commit(someHosts("h-2"), noRecords); err != nil {
		require.ErrorContains(t, err, "nothing")
		require.NotContains(t, storedHosts(t, dsn), "h-2")
	}
	require.NoError(t, a.Commit(someHosts("h-3"), noRecords), "reconnected, commit_seq where it left it, the lease live")
	l, ok := a.Lease()
	require.True(t, ok)
	require.Equal(t, la.Epoch, l.Epoch)
	_, err = a.Renew(ctxFor(t), l)
	require.NoError(t, err)
	who, err := b.Leader(ctxFor(t))
	require.NoError(t, err)
	require.Equal(t, "replica-a", who.Holder)
	require.Contains(t, storedHosts(t, dsn), "h-3")

	dup, err := b.Enqueue(ctxFor(t), InboxItem{HostID: "host-1", Body: []byte("before"), ReceivedBy: "replica-b"})
	require.NoError(t, err, "the pool's connections broke; a new one takes over at once")
	require.True(t, dup, "the row enqueued before the crash is there")
	_, err = b.Enqueue(ctxFor(t), InboxItem{HostID: "host-1", Body: []byte("after"), ReceivedBy: "replica-b"})
	require.NoError(t, err)
	n, err := b.InboxLen(ctxFor(t))
	require.NoError(t, err)
	require.Equal(t, 2, n)

	// a's lease ends (by the database's clock: as if a were paused); b
	// takes over and commits; the database restarts. a's new connection
	// finds a later epoch in commit_seq: a no longer leads.
	_, err = testConn(t, dsn).Exec(ctxFor(t), "UPDATE leader_lease SET expires_at = clock_timestamp()")
	require.NoError(t, err)
	lb := lead(t, b, "replica-b", longTTL)
	require.NoError(t, b.Commit(someHosts("h-b"), noRecords))
	cl.RestartImmediate(t)
	require.Error(t, a.Commit(someHosts("h-4"), noRecords)) // the broken connection, or already the next one's finding
	require.ErrorIs(t, a.Commit(someHosts("h-4"), noRecords), ErrLeaseLost)
	require.ErrorIs(t, a.Commit(someHosts("h-4"), noRecords), ErrNotLeader)
	_, ok = a.Lease()
	require.False(t, ok)
	if err := b.Commit(someHosts("h-b2"), noRecords); err != nil {
		require.ErrorContains(t, err, "nothing")
	}
	require.NoError(t, b.Commit(someHosts("h-b3"), noRecords))
	l, ok = b.Lease()
	require.True(t, ok)
	require.Equal(t, lb.Epoch, l.Epoch)
	stored := storedHosts(t, dsn)
	require.NotContains(t, stored, "h-4")
	require.Subset(t, stored, []string{"h-1", "h-3", "h-b", "h-b3"})
}

// TestPGReplicaCommitOutcomeUnknown: TestPGCommitOutcomeUnknown on a
// replica: the connection breaks after the batch was sent, and Commit asks
// a new connection (once the old session has ended) whether it took
// effect, by commit_seq's (seq, epoch). One that took effect unnoticed
// makes the next commit fail with ErrStale until Load, not every later one.
func TestPGReplicaCommitOutcomeUnknown(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	p, via := newCutProxy(t, dsn)
	db := openReplicaT(t, via, Options{CommitTimeout: 10 * time.Second})
	lead(t, db, "replica-a", longTTL)
	// Prepares the commit's statements: each later commit on this
	// connection is a single batch (one ReadyForQuery).
	require.NoError(t, db.Commit(someHosts("h-0"), noRecords))

	t.Run("took effect", func(t *testing.T) {
		p.set(func(p *cutProxy) { p.afterReady = true })
		require.NoError(t, db.Commit(someHosts("h-1"), noRecords), "PostgreSQL committed it: Commit finds out and says so")
		require.False(t, p.take(&p.afterReady), "the proxy cut the connection")
		require.Equal(t, []string{"h-0", "h-1"}, storedHosts(t, dsn))
		require.NoError(t, db.Commit(someHosts("h-2"), noRecords))
	})
	t.Run("did not take effect", func(t *testing.T) {
		p.set(func(p *cutProxy) { p.beforeSend = true })
		err := db.Commit(someHosts("h-3"), noRecords)
		require.ErrorContains(t, err, "did not take effect")
		require.False(t, p.take(&p.beforeSend), "the proxy cut the connection")
		require.NotContains(t, storedHosts(t, dsn), "h-3")
		require.NoError(t, db.Commit(someHosts("h-4"), noRecords))
	})
	t.Run("not known, then found out", func(t *testing.T) {
		p.set(func(p *cutProxy) { p.afterReady, p.refuse = true, true })
		err := db.Commit(someHosts("h-5"), noRecords)
		require.ErrorContains(t, err, "reported as failed")
		require.Contains(t, storedHosts(t, dsn), "h-5")
		p.set(func(p *cutProxy) { p.refuse = false })
		for range 2 {
			require.ErrorIs(t, db.Commit(someHosts("h-6"), noRecords), ErrStale)
		}
		require.NotContains(t, storedHosts(t, dsn), "h-6")
		require.Contains(t, loadedHosts(t, db), "h-5", "Load has it")
		require.NoError(t, db.Commit(someHosts("h-6"), noRecords), "and the replica commits again, still the leader")
		require.Contains(t, storedHosts(t, dsn), "h-6")
	})
}

// TestPGLeaseCloseBounded: Close of a leader whose database is gone does
// not hang: the release is best effort, bounded.
func TestPGLeaseCloseBounded(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	p, via := newCutProxy(t, dsn)
	db, err := Open(ctxFor(t), via, Options{Replica: true, Timeout: 5 * time.Second, CommitTimeout: time.Second})
	require.NoError(t, err)
	lead(t, db, "replica-a", longTTL)
	p.set(func(p *cutProxy) { p.beforeSend, p.refuse = true, true })
	start := time.Now()
	err = db.Close()
	require.Less(t, time.Since(start), 2*closeTimeout)
	if err != nil {
		require.False(t, errors.Is(err, ErrLeaseLost), "%v", err)
	}
}

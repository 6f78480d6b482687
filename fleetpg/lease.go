package fleetpg

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNotLeader is returned by Commit on a replica that does not hold the
// leader lease: only the leader commits.
var ErrNotLeader = errors.New("fleetpg: this replica does not hold the leader lease (only the leader commits)")

// ErrLeaseLost is returned by Commit, Renew and Release when the lease this
// replica held has expired or another replica took it over: nothing was
// stored. It is an ErrNotLeader (errors.Is). The replica may Acquire again
// (a new epoch) and must then Load before it commits.
var ErrLeaseLost = fmt.Errorf("fleetpg: the leader lease was lost (it expired, or another replica took it over): %w", ErrNotLeader)

// ErrLeaseHeld is what a LeaseHeldError is (errors.Is): Acquire found
// another holder's lease live.
var ErrLeaseHeld = errors.New("fleetpg: another replica holds the leader lease")

// ErrNoLeader is returned by Leader when no lease is live.
var ErrNoLeader = errors.New("fleetpg: no replica holds the leader lease")

// ErrStale is returned by Commit on a leader whose state may miss commits
// that are in the database: it has just taken the lease (a new epoch), or
// commit_seq was not where it left it (a commit of unknown outcome took
// effect, or another leader wrote). Load (which reads the state and
// commit_seq in one snapshot) clears it; the server must replace its state
// with what Load returns.
var ErrStale = errors.New("fleetpg: the database may hold commits this replica's state lacks (it has just taken the leader lease, " +
	"or commit_seq moved on): Load the state again before committing")

// ErrNotReplica is returned by Acquire, Renew, Release and CommitConsumed
// on a database not opened with Options.Replica.
var ErrNotReplica = errors.New("fleetpg: the leader lease is for a database opened as a replica (Options.Replica)")

// maxHolder bounds a holder's name, in bytes.
const maxHolder = 200

// MaxLeaseTTL bounds the TTL of a lease: a leader that dies holds the
// database's leadership this long at most.
const MaxLeaseTTL = 24 * time.Hour

// Lease is a leader lease as the database recorded it.
type Lease struct {
	// Holder is the name the leader acquired it under.
	Holder string
	// Epoch is the fencing token: it goes up by one at every takeover,
	// and every commit checks it in its transaction.
	Epoch int64
	// Expires is when the lease ends, by the database's clock (which is
	// the one that judges it), as the database last set it.
	Expires time.Time
	// Deadline is a bound by this process's clock (with its monotonic
	// reading): the time just before the Acquire or Renew that set
	// Expires was sent, plus the TTL. The database set Expires later
	// than that, so the lease lasts at least until Deadline (as long as
	// the database's clock does not jump forward, and it is not
	// released). A leader stops acting as one at Deadline unless a Renew
	// succeeded; its commits are fenced in any case. Zero in what Leader
	// returns.
	Deadline time.Time
}

// LeaseHeldError is Acquire's error when another holder's lease is live.
type LeaseHeldError struct {
	Holder  string
	Epoch   int64
	Expires time.Time // the database's clock
	// Remaining is how long the lease has to run, by the database's
	// clock, when Acquire looked: a wait that does not depend on this
	// process's clock.
	Remaining time.Duration
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("fleetpg: replica %q holds the leader lease (epoch %d) until %s by the database's clock, %v from now",
		e.Holder, e.Epoch, e.Expires.UTC().Format(time.RFC3339Nano), e.Remaining)
}

// Is makes a LeaseHeldError an ErrLeaseHeld.
func (e *LeaseHeldError) Is(target error) bool { return target == ErrLeaseHeld }

// The lease's statements. clock_timestamp() is the database's clock when
// the row is examined (after any wait for its lock), where now() would be
// when the transaction began: a statement that waited for the row must
// judge the lease by the time it got it.
const (
	// acquireSQL takes the lease ($1 holder, $2 TTL in microseconds) if it
	// has expired, or renews it if $1 holds it at epoch $3 ($3 = -1: this
	// DB holds none) and it has not expired. A takeover raises the epoch
	// past the row's, the last commit's and $3: the epoch of a commit
	// never comes back, even when the row was deleted by hand, and the
	// epoch returned is $3 only when it renewed. When another
	// holder's lease is live it returns no row, and the row stays locked
	// by the transaction (ON CONFLICT locks it before it evaluates WHERE).
	// The WHERE is evaluated before the SET, each with its own reading of
	// the clock: a lease of $1's that expires in between is taken over
	// (a new epoch), never renewed.
	acquireSQL = `INSERT INTO leader_lease AS l (one, holder, epoch, expires_at)
VALUES (true, $1, greatest($3, (SELECT coalesce(max(epoch), 0) FROM commit_seq)) + 1, clock_timestamp() + $2::bigint * interval '1 microsecond')
ON CONFLICT (one) DO UPDATE SET
	epoch = CASE WHEN l.holder = $1 AND l.epoch = $3 AND l.expires_at > clock_timestamp() THEN l.epoch
		ELSE greatest(l.epoch, $3, (SELECT coalesce(max(epoch), 0) FROM commit_seq)) + 1 END,
	holder = excluded.holder,
	expires_at = clock_timestamp() + $2::bigint * interval '1 microsecond'
WHERE l.expires_at <= clock_timestamp() OR (l.holder = $1 AND l.epoch = $3)
RETURNING epoch, expires_at`

	// heldSQL reads the lease that refused an Acquire: its remaining time
	// in microseconds by the database's clock.
	heldSQL = `SELECT holder, epoch, expires_at, (extract(epoch FROM expires_at - clock_timestamp()) * 1000000)::bigint
FROM leader_lease WHERE one`

	// renewSQL extends the lease of $1 at epoch $2 by $3 microseconds from
	// now, if it has not expired.
	renewSQL = `UPDATE leader_lease SET expires_at = clock_timestamp() + $3::bigint * interval '1 microsecond'
WHERE one AND holder = $1 AND epoch = $2 AND expires_at > clock_timestamp()
RETURNING expires_at`

	// releaseSQL ends the lease of $1 at epoch $2 now, if it has not
	// expired: the next Acquire takes it at once.
	releaseSQL = `UPDATE leader_lease SET expires_at = clock_timestamp()
WHERE one AND holder = $1 AND epoch = $2 AND expires_at > clock_timestamp()`

	leaderSQL = `SELECT holder, epoch, expires_at, expires_at > clock_timestamp() FROM leader_lease WHERE one`

	// leaseFenceSQL is the check of a lease ($1 epoch, $2 holder) in the
	// transaction of a write it fences: the write commits only if the
	// lease is still $2's at epoch $1 and has not expired by the
	// database's clock, and fails (NOT NULL on leader_lease.epoch,
	// SQLSTATE 23502: see fencedOut) otherwise, the row missing included.
	// The UPDATE locks the row until the transaction ends, so a takeover
	// (an update of the same row) waits for the write to end and reads
	// what it wrote, or the check, having waited for the takeover, sees
	// the new epoch and fails: see the package comment.
	//
	// (Not INSERT ... ON CONFLICT DO UPDATE with a NULL in the proposed
	// row, as fenceSQL has no need to: PostgreSQL checks NOT NULL on the
	// proposed row before it looks for the conflict, so such a statement
	// fails every time.)
	leaseFenceSQL = `WITH fence AS (
	UPDATE leader_lease SET epoch = CASE WHEN holder = $2 AND epoch = $1 AND expires_at > clock_timestamp() THEN epoch END
	WHERE one RETURNING epoch)
INSERT INTO leader_lease (one, holder, epoch, expires_at)
SELECT true, $2, NULL, '-infinity' WHERE NOT EXISTS (SELECT FROM fence)`

	// replicaFenceSQL is fenceSQL that also records the epoch ($3) the
	// commit ran under.
	replicaFenceSQL = `INSERT INTO commit_seq (one, seq, epoch) VALUES (true, $1, $3)
ON CONFLICT (one) DO UPDATE SET seq = CASE WHEN commit_seq.seq = $2 THEN excluded.seq END, epoch = excluded.epoch`
)

// leaseFence is the statement that fences a write by the lease l (see
// leaseFenceSQL); fencedOut tells its failure.
func leaseFence(l Lease) stmt {
	return stmt{what: "check the leader lease", sql: leaseFenceSQL, args: []any{l.Epoch, l.Holder}}
}

// fencedOut reports whether err is leaseFence's failure: the lease had
// expired or was taken over, and the transaction was rolled back.
func fencedOut(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23502" && pe.TableName == "leader_lease"
}

// newSessionKey is a replica's own advisory lock key: random, and none of
// the package's fixed keys.
func newSessionKey() int64 {
	for {
		k := rand.Int64()
		if k != lockKey && k != migrateLockKey {
			return k
		}
	}
}

func checkHolder(holder string) error {
	switch {
	case holder == "":
		return errors.New("fleetpg: a lease holder needs a name")
	case len(holder) > maxHolder:
		return fmt.Errorf("fleetpg: a lease holder's name is at most %d bytes", maxHolder)
	case !utf8.ValidString(holder) || strings.ContainsRune(holder, 0):
		return fmt.Errorf("fleetpg: a lease holder's name must be UTF-8 text without NUL: %q", holder)
	}
	return nil
}

// micros is ttl in whole microseconds, at least one, at most MaxLeaseTTL.
func micros(ttl time.Duration) (int64, error) {
	us := ttl.Microseconds()
	if us < 1 || ttl > MaxLeaseTTL {
		return 0, fmt.Errorf("fleetpg: a lease's TTL must be between a microsecond and %v, not %v", MaxLeaseTTL, ttl)
	}
	return us, nil
}

// leaseCtx bounds a lease call by ctx and CommitTimeout.
func (db *DB) leaseCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, db.opts.CommitTimeout)
}

// run runs fn on the session, reconnecting first if needed. When fn fails
// because the connection broke, and fn may run again (retry, or nothing
// was sent), it runs once more on a new connection. The caller holds
// db.mu; fn changes nothing of db.
func (db *DB) run(ctx context.Context, retry bool, fn func(*pgx.Conn) error) error {
	if err := db.ready(ctx); err != nil {
		return err
	}
	err := fn(db.conn)
	if err == nil || !db.conn.IsClosed() {
		return err
	}
	db.drop()
	if !retry && !pgconn.SafeToRetry(err) {
		return err
	}
	if rerr := db.ready(ctx); rerr != nil {
		return fmt.Errorf("%w (and again after reconnecting: %w)", err, rerr)
	}
	err = fn(db.conn)
	if err != nil && db.conn.IsClosed() {
		db.drop()
	}
	return err
}

// Acquire takes the leader lease for holder, for ttl by the database's
// clock, if it is free or has expired: the takeover raises the epoch. If
// this DB already holds it under holder (the same epoch, not expired) it
// renews it, epoch unchanged. If another holder's lease is live it fails
// with a *LeaseHeldError (an ErrLeaseHeld) that says whose and for how
// long. An expired lease of this DB's own is taken over like anyone's: a
// new epoch.
//
// Holder names a replica; give each replica (each process) a name of its
// own, such as host name and process id. A lease taken by an Acquire whose
// answer was lost (the connection broke) is not this DB's: Acquire fails
// with ErrLeaseHeld, naming holder, until it expires.
//
// With a new epoch the DB reads commit_seq again (where the previous
// leaders left it) and refuses to commit (ErrStale) until Load has run:
// the caller must then Load and replace all of its state with what Load
// returns, since the previous leader may have committed after the caller
// last loaded, up to the moment this Acquire took the lease.
func (db *DB) Acquire(ctx context.Context, holder string, ttl time.Duration) (Lease, error) {
	if err := checkHolder(holder); err != nil {
		return Lease{}, err
	}
	us, err := micros(ttl)
	if err != nil {
		return Lease{}, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.leaseUsable(); err != nil {
		return Lease{}, err
	}
	ctx, cancel := db.leaseCtx(ctx)
	defer cancel()
	// The epoch this DB holds under holder, whether or not it is still
	// live (the database judges that): -1 for none, which no row has.
	ours := int64(-1)
	if db.held && db.lease.Holder == holder {
		ours = db.lease.Epoch
	}
	start := time.Now()
	var got Lease
	var seq, seqEpoch int64
	err = db.run(ctx, false, func(conn *pgx.Conn) error {
		got = Lease{Holder: holder, Deadline: start.Add(ttl)}
		return pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
			err := tx.QueryRow(ctx, acquireSQL, holder, us, ours).Scan(&got.Epoch, &got.Expires)
			if errors.Is(err, pgx.ErrNoRows) {
				held := &LeaseHeldError{}
				var rem int64
				if err := tx.QueryRow(ctx, heldSQL).Scan(&held.Holder, &held.Epoch, &held.Expires, &rem); err != nil {
					return fmt.Errorf("fleetpg: acquire the leader lease: read who holds it: %w", err)
				}
				held.Remaining = time.Duration(rem) * time.Microsecond
				return held
			}
			if err != nil {
				return fmt.Errorf("fleetpg: acquire the leader lease: %w", err)
			}
			if got.Epoch == ours {
				return nil // renewed
			}
			// A takeover: read commit_seq in a statement of its own, whose
			// snapshot (read committed) is taken after the takeover's
			// update got the row, so after every commit of the previous
			// leader (each held the row until it ended).
			if seq, seqEpoch, err = readSeq(ctx, tx); err != nil {
				return err
			}
			return nil
		})
	})
	if err != nil {
		var held *LeaseHeldError
		if errors.As(err, &held) {
			if ours >= 0 && held.Epoch != ours {
				db.held = false // another replica took it over
			}
			return Lease{}, held
		}
		return Lease{}, err
	}
	if got.Epoch != ours {
		db.seq, db.seqEpoch = seq, seqEpoch
		db.inflight, db.unknown = 0, 0
		db.needLoad = true
	}
	db.lease, db.held, db.ttl = got, true, ttl
	return got, nil
}

// Renew extends the lease by the TTL it was acquired with, from now by the
// database's clock, if it is still l's (holder and epoch) and has not
// expired; otherwise it fails with ErrLeaseLost and the DB no longer holds
// a lease. An expired lease is never renewed, even if no one took it over
// meanwhile (see "Leader lease" in the package comment): the holder must
// Acquire it again, a new epoch, and Load.
func (db *DB) Renew(ctx context.Context, l Lease) (Lease, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.leaseUsable(); err != nil {
		return Lease{}, err
	}
	if !db.held || db.lease.Holder != l.Holder || db.lease.Epoch != l.Epoch {
		return Lease{}, fmt.Errorf("fleetpg: renew the leader lease (epoch %d of %q): this replica does not hold it: %w", l.Epoch, l.Holder, ErrLeaseLost)
	}
	us, _ := micros(db.ttl)
	ctx, cancel := db.leaseCtx(ctx)
	defer cancel()
	start := time.Now()
	var expires time.Time
	err := db.run(ctx, true, func(conn *pgx.Conn) error {
		err := conn.QueryRow(ctx, renewSQL, l.Holder, l.Epoch, us).Scan(&expires)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("fleetpg: renew the leader lease (epoch %d of %q): it has expired or was taken over: %w", l.Epoch, l.Holder, ErrLeaseLost)
		}
		if err != nil {
			return fmt.Errorf("fleetpg: renew the leader lease: %w", err)
		}
		return nil
	})
	if errors.Is(err, ErrLeaseLost) {
		db.held = false
	}
	if err != nil {
		return Lease{}, err
	}
	db.lease.Expires, db.lease.Deadline = expires, start.Add(db.ttl)
	return db.lease, nil
}

// Release ends the lease l at once (its expiry becomes now, by the
// database's clock), so that another replica takes over without waiting
// for the TTL: a clean shutdown calls it after its last commit (Close does
// too). The DB no longer holds a lease, whatever the outcome. It fails
// with ErrLeaseLost when the lease had already expired or been taken over.
func (db *DB) Release(ctx context.Context, l Lease) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.leaseUsable(); err != nil {
		return err
	}
	ctx, cancel := db.leaseCtx(ctx)
	defer cancel()
	return db.release(ctx, l)
}

// release is Release; the caller holds db.mu.
func (db *DB) release(ctx context.Context, l Lease) error {
	if db.held && db.lease.Holder == l.Holder && db.lease.Epoch == l.Epoch {
		db.held = false
	}
	return db.run(ctx, true, func(conn *pgx.Conn) error {
		tag, err := conn.Exec(ctx, releaseSQL, l.Holder, l.Epoch)
		if err != nil {
			return fmt.Errorf("fleetpg: release the leader lease: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("fleetpg: release the leader lease (epoch %d of %q): it had expired or was taken over: %w", l.Epoch, l.Holder, ErrLeaseLost)
		}
		return nil
	})
}

// Lease returns the lease this DB holds, as its last Acquire or Renew
// left it, and whether it holds one. It asks nothing of the database: a
// lease that expired since, unnoticed, is still returned (compare
// Deadline with the time).
func (db *DB) Lease() (Lease, bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if !db.held {
		return Lease{}, false
	}
	return db.lease, true
}

// Leader reads the lease as the database holds it, for any replica (and
// for a DB opened otherwise, the schema being this build's): who leads,
// under which epoch, until when. When no lease is live it returns the last
// one (Holder "" and Epoch 0 if there never was one) with ErrNoLeader.
func (db *DB) Leader(ctx context.Context) (Lease, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return Lease{}, errClosed
	}
	ctx, cancel := db.leaseCtx(ctx)
	defer cancel()
	var l Lease
	var live bool
	err := db.run(ctx, true, func(conn *pgx.Conn) error {
		err := conn.QueryRow(ctx, leaderSQL).Scan(&l.Holder, &l.Epoch, &l.Expires, &live)
		if errors.Is(err, pgx.ErrNoRows) {
			l, live = Lease{}, false
			return nil
		}
		if err != nil {
			return fmt.Errorf("fleetpg: read the leader lease: %w", err)
		}
		return nil
	})
	if err != nil {
		return Lease{}, err
	}
	if !live {
		return l, ErrNoLeader
	}
	return l, nil
}

// leaseUsable says why the lease calls cannot run, if they cannot. The
// caller holds db.mu.
func (db *DB) leaseUsable() error {
	switch {
	case db.closed:
		return errClosed
	case !db.opts.Replica:
		return ErrNotReplica
	}
	return nil
}

// commitReplica is Commit on a replica: stmts fenced by the lease and by
// commit_seq, in one transaction. Without statements it stores nothing
// and asks nothing of the database. The caller holds db.mu.
func (db *DB) commitReplica(stmts []stmt) error {
	if !db.held {
		return fmt.Errorf("fleetpg: commit: nothing stored: %w", ErrNotLeader)
	}
	if db.needLoad {
		return fmt.Errorf("fleetpg: commit: nothing stored: %w", ErrStale)
	}
	if len(stmts) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), db.opts.CommitTimeout)
	defer cancel()
	if err := db.ready(ctx); err != nil {
		return fmt.Errorf("fleetpg: commit: nothing stored: %w", err)
	}
	// A new connection may have found commit_seq moved on (reconcile).
	if !db.held {
		return fmt.Errorf("fleetpg: commit: nothing stored: commit_seq of %s shows a later leader's commit: %w", db.where(), ErrLeaseLost)
	}
	if db.needLoad {
		return fmt.Errorf("fleetpg: commit: nothing stored: %w", ErrStale)
	}
	l := db.lease
	next := db.seq + 1
	stmts = append(stmts, leaseFence(l),
		stmt{what: "advance commit_seq", sql: replicaFenceSQL, args: []any{next, db.seq, l.Epoch}})
	err := send(ctx, db.conn, stmts)
	if err == nil {
		db.seq, db.seqEpoch = next, l.Epoch
		return nil
	}
	if !db.conn.IsClosed() {
		// PostgreSQL answered: the transaction was rolled back.
		var pe *pgconn.PgError
		switch {
		case fencedOut(err):
			db.held = false
			return fmt.Errorf("fleetpg: commit: nothing stored: the lease (epoch %d of %q) had expired or was taken over, by the database's clock: %w",
				l.Epoch, l.Holder, ErrLeaseLost)
		case errors.As(err, &pe) && pe.Code == "23502" && pe.TableName == "commit_seq":
			db.needLoad = true
			return fmt.Errorf("fleetpg: commit: nothing stored: commit_seq of %s is not %d: %w", db.where(), db.seq, ErrStale)
		}
		return fmt.Errorf("fleetpg: commit: nothing stored: %w", err)
	}
	db.drop()
	if pgconn.SafeToRetry(err) {
		return fmt.Errorf("fleetpg: commit: the connection to %s is lost; nothing was sent, nothing stored (the next commit reconnects): %w", db.where(), err)
	}
	// Whether PostgreSQL committed is not known: ask a new connection,
	// once the old session has ended (ready waits for its session lock).
	db.inflight = next
	rctx, rcancel := context.WithTimeout(context.Background(), db.opts.CommitTimeout)
	defer rcancel()
	rerr := db.ready(rctx)
	switch {
	case rerr == nil && db.seq == next && db.seqEpoch == l.Epoch && db.held && !db.needLoad:
		return nil // it took effect
	case rerr == nil && !db.needLoad:
		return fmt.Errorf("fleetpg: commit: the connection to %s broke (%w); reconnected, and the commit did not take effect: nothing stored", db.where(), err)
	case rerr == nil && !db.held:
		// Either this commit took effect before the takeover, and the
		// new leader loaded it, or it never will: not this replica's
		// business any more.
		return fmt.Errorf("fleetpg: commit: the connection to %s broke (%w); reconnected, and another leader has committed since: %w",
			db.where(), err, ErrLeaseLost)
	case rerr == nil:
		return fmt.Errorf("fleetpg: commit: the connection to %s broke (%w); reconnected, and commit_seq has moved on: "+
			"whether this commit took effect is not known: %w", db.where(), err, ErrStale)
	}
	db.inflight, db.unknown = 0, next
	return fmt.Errorf("fleetpg: commit: the connection to %s broke before PostgreSQL answered (%w), and reconnecting failed (%v): "+
		"it is reported as failed; if it took effect after all, the next connection finds out, and commits fail with ErrStale until Load",
		db.where(), err, rerr)
}

// reconcile is a replica's check of commit_seq (seq, epoch) on a new
// connection, which got the replica's session lock: no commit of its
// previous sessions is still in flight. The caller holds db.mu.
func (db *DB) reconcile(seq, epoch int64) {
	switch {
	case !db.held:
		// A follower: commit_seq is the leader's business; Acquire reads
		// it again, and requires a Load.
	case seq == db.seq && epoch == db.seqEpoch:
		// Nothing happened meanwhile; a commit in flight did not take
		// effect.
	case db.inflight != 0 && seq == db.inflight && epoch == db.lease.Epoch:
		// The commit in flight took effect: only this DB commits under
		// its epoch, and (seq, epoch) names one commit.
	default:
		// A commit reported as failed took effect, or another leader
		// committed: the state must be loaded again. A later epoch in
		// commit_seq means the lease is over (epochs only go up); else
		// the lease fence decides at the next commit.
		db.needLoad = true
		if epoch > db.lease.Epoch {
			db.held = false
		}
	}
	db.seq, db.seqEpoch = seq, epoch
	db.inflight, db.unknown = 0, 0
}

// lockReplica takes a replica's locks on conn: the server's key in shared
// mode (several replicas share it, a server using the database alone
// cannot have it meanwhile, nor they while it has it), asking again until
// wait ends; then the DB's own key, exclusively, until ctx ends: a new
// connection gets it once PostgreSQL has ended the DB's previous session,
// so that no commit of that session is still in flight when the new one
// reads commit_seq.
func (db *DB) lockReplica(ctx, wait context.Context, conn *pgx.Conn) error {
	got, err := takeLock(ctx, wait, conn, "SELECT pg_try_advisory_lock_shared($1)", lockKey)
	if err != nil {
		return err
	}
	if !got {
		return fmt.Errorf("%w: a ringfence-server that uses it alone (not as a replica) holds its lock; stop it before starting replicas", ErrLocked)
	}
	got, err = takeLock(ctx, ctx, conn, "SELECT pg_try_advisory_lock($1)", db.sessionKey)
	if err != nil {
		return err
	}
	if !got {
		return fmt.Errorf("fleetpg: reconnected to %s, but this replica's previous session still runs "+
			"(PostgreSQL ends it once it notices the connection is gone), or the database is slow to answer", db.where())
	}
	return nil
}

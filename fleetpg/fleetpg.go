// Package fleetpg is ringfence-server's state in PostgreSQL ('serve --db
// postgres://...'), in place of fleetdb's server.db: the hosts of the
// fleet, every channel's rollout with its decisions and gate evidence, the
// keys not (or no longer) in the fleet, and the enrolment tokens. A
// restart loads it and every rollout resumes where it was. The state
// directory keeps the rest (operator.token, serve.url).
//
// Sync policy: every change (a telemetry batch's effects, a decision, an
// admission) is one transaction, committed before the server shows it,
// acts on it or answers (server/commit.go). PostgreSQL commits durably by
// default: with synchronous_commit on, COMMIT returns once the
// transaction's write-ahead log is flushed to disk (and, with synchronous
// standbys configured, on them as well). Do not turn synchronous_commit
// off for this database: a crash would then lose decisions the server
// already acted on.
//
// # Layout (migrations/)
//
//	schema_migrations  version -> when it was applied
//	hosts              id text -> controller.Host (jsonb): the admitted hosts
//	rollouts           channel bigint -> controller.Rollout (jsonb)
//	admission          id text -> admission.Record (jsonb): pending, rejected, decommissioned keys
//	tokens             id text -> admission.Token (jsonb): enrolment tokens (hashes, not secrets)
//	commit_seq         one row: the number of the last commit, and the lease epoch it ran under
//	leader_lease       one row: the replicas' leader lease (schema 2; see "Leader lease")
//	telemetry_inbox    id bigserial -> a host's verified telemetry batch, until the leader applies it (schema 3)
//	repo_files         path text -> the TUF repository's bytes, with repo_version (schema 3; Repo)
//
// The values are the JSON fleetdb stores, so that an operator can query
// them (SELECT value->>'state' FROM rollouts), with one difference: jsonb
// cannot hold the character U+0000, which a host may put in a requested
// tag, so it is stored as U+FFFD. Open applies the migrations the database
// lacks, each in one transaction, under a transaction-level advisory lock
// so that servers starting together apply each once; it refuses a
// database whose schema is newer than this build's.
//
// Commits: one pipeline (pgx.Batch) per commit, a statement per table
// (upserts of arrays through unnest, INSERT ... ON CONFLICT DO UPDATE, and
// DELETE ... = ANY), in one implicit transaction: one round trip whatever
// the number of rows, and all or nothing. Its last statement moves
// commit_seq from the number this DB last wrote to the next one, and fails
// the transaction when the row holds another number. So when a connection
// breaks before PostgreSQL answered, the next connection reads commit_seq
// and knows whether the commit took effect; and a database someone else
// wrote to meanwhile is refused, never written over.
//
// # The lock
//
// A server that uses the database alone takes a session-level advisory
// lock (pg_try_advisory_lock, one fixed key per database) at Open, and
// fails with ErrLocked while another session holds it. Replicas
// (Options.Replica) take the same key in shared mode: any number of them
// share a database, and they and a server using it alone exclude each
// other, in either order. The DB has one connection, not a pool (the
// server commits one change at a time), and the lock is held on it: every
// write runs in the session that holds the lock. When the connection is
// lost the lock goes with it, and the next call opens a new one that takes
// the lock again and checks commit_seq before anything is written. It
// must do so only after PostgreSQL ended the old session, so that nothing
// of it is still in flight: a server using the database alone knows that
// when it gets the exclusive lock back; a replica, whose shared lock
// others hold too, also takes an exclusive lock on a random key of its
// own, which its old session held until it ended. (The telemetry inbox
// has connections of its own: see "Telemetry inbox".)
//
// # Leader lease
//
// Of the replicas sharing a database one leads, and only the leader
// commits. Who leads is the one row of leader_lease (migrations/0002):
// holder (the replica's name), epoch and expires_at. Acquire takes the
// lease when it has expired, raising the epoch; Renew extends it; Release
// ends it at once (Close does, so another replica takes over without
// waiting for it to expire).
//
// The epoch is a fencing token. Every commit of a replica checks, in its
// own transaction, as its last statements but one, that the row still
// names its holder and epoch and has not expired, and fails otherwise
// (leaseFenceSQL). That statement updates the row, which locks it until
// the transaction ends; a takeover updates the same row. So a commit and
// a takeover are ordered: either the commit ends first, and the takeover,
// having waited for the row, reads commit_seq after it; or the takeover
// got the row first, and the commit's check, having waited, sees the new
// epoch and fails, nothing of it stored. A leader that was paused (a
// stopped process, a long garbage collection, a partition) and wakes up
// believing its lease live gets ErrLeaseLost from its next commit, and
// nothing of it is stored, whatever its own clock says: every judgement
// of the lease uses the database's clock, clock_timestamp() (the time the
// statement looks at the row, after any wait for its lock; now() would be
// the start of the transaction), never a replica's. Lease.Deadline is
// only how long a leader may act on its lease without asking (the time
// before the Acquire or Renew was sent, plus the TTL, on this process's
// monotonic clock).
//
// Renew never revives an expired lease, even one that no one took over:
// the holder must Acquire again, which gives a new epoch and requires a
// Load. Expiry ends a leadership: from that moment another replica may
// take over and Leader reports none, so "expired" must mean "over", not
// "over unless the holder comes back first". And the holder, whose commits
// the fence has refused since the expiry, may hold changes in memory that
// the database does not (a server changes its state, then commits it);
// the new epoch's Load replaces them with what the database holds,
// whether or not anyone led meanwhile.
//
// A new epoch makes the DB refuse to commit (ErrStale) until Load has run:
// Acquire, then Load (which reads the state and commit_seq in one
// snapshot, taken after the takeover, so with every commit of the
// previous leaders), then Commit. The server replaces all of its state
// with what Load returned. commit_seq (seq, epoch) fences too: a commit
// must find it where this DB last wrote or read it, which catches a
// commit of unknown outcome that took effect after all (ErrStale: Load
// again) and anyone writing around the lease.
//
// # Telemetry inbox
//
// Every replica, leader or not, stores a host's verified batch in
// telemetry_inbox (Enqueue) before it answers the host; the leader reads
// the rows (Inbox), applies them, and deletes them in the transaction that
// commits their effects (CommitConsumed), fenced by its lease: a batch is
// applied once, and a leader fenced out deletes nothing, so the next one
// reads the same rows. Consumption is by deletion, never by remembering
// the last id read: ids are drawn from a sequence when a row is inserted,
// and transactions commit in another order, so a row with a lower id than
// one already read may become visible later; it is simply there at the
// next look. Enqueue runs in HTTP handlers, many at once, while the leader
// commits: not on the DB's connection (whose mutex a commit holds for its
// whole round trip) but on a small pool of its own (pgxpool, at most
// Options.InboxConns connections), with no lock and no lease. So do
// Inbox, InboxLen and Standing.
package fleetpg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/fleetdb"
)

// Advisory lock keys: the server's exclusive use of the database (session
// level), and the migrations (transaction level). Advisory locks are per
// database, so servers on different databases of one cluster do not meet.
const (
	lockKey        int64 = 0x72696e6766656e63 // "ringfenc"
	migrateLockKey int64 = 0x72696e676d696772 // "ringmigr"
)

// Defaults of Options.
const (
	DefaultCommitTimeout = 10 * time.Second
	DefaultLoadTimeout   = 5 * time.Minute
	// DefaultConnectTimeout bounds a connection attempt whose URL sets no
	// connect_timeout.
	DefaultConnectTimeout = 10 * time.Second
)

// sessionParams are set on every connection unless the URL sets them:
// the name pg_stat_activity shows, and TCP keepalives on PostgreSQL's side
// of the connection, so that the session (and the lock) of a server whose
// machine vanished ends within about a minute rather than the system's
// default two hours (unix socket connections ignore them).
var sessionParams = map[string]string{
	"application_name":        "ringfence-server",
	"tcp_keepalives_idle":     "30",
	"tcp_keepalives_interval": "10",
	"tcp_keepalives_count":    "3",
}

// lockPoll is how often a waiting Open asks for the lock again.
const lockPoll = 100 * time.Millisecond

// closeTimeout bounds Close's goodbye to the server.
const closeTimeout = 5 * time.Second

// ErrLocked is returned by Open when another session (a running server)
// holds the database's lock.
var ErrLocked = errors.New("fleetpg: another ringfence-server is using this database (it holds the database's lock): " +
	"stop it, or talk to it with --server; servers share a database as replicas (serve --db: a leader lease), " +
	"but none runs beside a command that writes to the database directly, nor such a command beside them")

// ErrBackupUnsupported is returned by Backup: PostgreSQL's own tools back
// the database up.
var ErrBackupUnsupported = errors.New("fleetpg: 'state backup' copies server.db, and this server keeps its state in PostgreSQL")

// ErrDamaged is returned by Load when a stored value does not decode; the
// error that wraps it names the table and the key.
var ErrDamaged = errors.New("fleetpg: a stored value does not decode")

// ErrReadOnly is returned by Commit on a DB opened ReadOnly.
var ErrReadOnly = errors.New("fleetpg: the database was opened read-only")

var errClosed = errors.New("fleetpg: the database is closed")

// Options configure Open.
type Options struct {
	// Timeout is how long Open waits for another session (a running
	// server) to let go of the database's lock before it fails with
	// ErrLocked; zero waits until ctx ends.
	Timeout time.Duration
	// ReadOnly opens to look, for the operator commands that read the
	// state while no server runs on it: no lock, no migrations, and
	// Commit refuses. The schema must be there, and this build's.
	ReadOnly bool
	// CommitTimeout bounds a commit, so that a database that hangs fails
	// commits instead of hanging the server; finding out whether a commit
	// that broke off took effect takes as long again at most. Zero means
	// DefaultCommitTimeout.
	CommitTimeout time.Duration
	// LoadTimeout bounds Load; zero means DefaultLoadTimeout.
	LoadTimeout time.Duration
	// Replica opens the database as one of several replicas that share
	// it: the server's lock in shared mode (so a server that uses the
	// database alone and replicas exclude each other), and Commit
	// refused unless this DB holds the leader lease (see Acquire and the
	// package comment). Not with ReadOnly.
	Replica bool
	// InboxConns is the most connections the telemetry inbox's pool
	// (Enqueue, Inbox, InboxLen, Standing) opens, beside the DB's own;
	// zero means DefaultInboxConns, at most MaxInboxConns.
	InboxConns int
	// MaxInbox is the number of inbox rows at which Enqueue refuses
	// (ErrInboxFull); zero means DefaultMaxInbox.
	MaxInbox int
	// MaxInboxBody bounds an enqueued body, in bytes; zero means
	// DefaultMaxInboxBody, at most MaxInboxBodyLimit.
	MaxInboxBody int
}

// DB is an open PostgreSQL state database. Its methods are safe for
// concurrent use; they run one at a time, on one connection, except the
// inbox's (Enqueue, Inbox, InboxLen, Standing), which run side by side on
// a pool of their own.
type DB struct {
	cfg  *pgx.ConnConfig
	opts Options

	mu   sync.Mutex
	conn *pgx.Conn // nil or closed: ready opens another
	// seq is commit_seq as this DB last wrote or read it.
	seq int64
	// inflight is the number of a commit whose connection broke before
	// PostgreSQL answered, while Commit finds out; unknown is one that
	// Commit reported as failed without finding out. 0: none.
	inflight, unknown int64
	// failed is set when the database no longer holds what this DB
	// wrote: every commit fails with it. (Not on a replica, which loads
	// the state again instead: needLoad.)
	failed error
	closed bool

	// A replica's: its own advisory lock key (see lockReplica); the
	// lease it holds (held), acquired for ttl; seqEpoch, the epoch of
	// commit_seq as this DB last wrote or read it; needLoad, set when
	// the state must be loaded before the next commit (ErrStale).
	sessionKey int64
	lease      Lease
	held       bool
	ttl        time.Duration
	seqEpoch   int64
	needLoad   bool

	// The telemetry inbox's (inbox.go): its connections (at most
	// Options.InboxConns), and its estimated number of rows.
	inbox      *pgxpool.Pool
	inboxCount inboxCount
}

// Open connects to the database the URL dsn names (postgres://... or any
// form pgx.ParseConfig takes), takes its lock and applies the migrations
// it lacks (unless opts.ReadOnly). ctx bounds the connection, the wait for
// the lock and the migrations. Errors never quote dsn, which may hold a
// password.
func Open(ctx context.Context, dsn string, opts Options) (*DB, error) {
	cfg, err := parseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if opts.CommitTimeout <= 0 {
		opts.CommitTimeout = DefaultCommitTimeout
	}
	if opts.LoadTimeout <= 0 {
		opts.LoadTimeout = DefaultLoadTimeout
	}
	if opts.Replica && opts.ReadOnly {
		return nil, errors.New("fleetpg: Options.Replica and Options.ReadOnly exclude each other")
	}
	if err := inboxDefaults(&opts); err != nil {
		return nil, err
	}
	db := &DB{cfg: cfg, opts: opts}
	// Its connections are made as they are needed: none yet.
	if db.inbox, err = newPool(dsn, cfg, opts.InboxConns); err != nil {
		return nil, err
	}
	if opts.Replica {
		db.sessionKey = newSessionKey()
	}
	conn, err := db.dial(ctx)
	if err != nil {
		db.inbox.Close()
		return nil, err
	}
	if err := db.prepare(ctx, conn); err != nil {
		closeConn(conn)
		db.inbox.Close()
		return nil, err
	}
	db.conn = conn
	return db, nil
}

// prepare is Open's work on its new connection.
func (db *DB) prepare(ctx context.Context, conn *pgx.Conn) error {
	if db.opts.ReadOnly {
		return checkSchema(ctx, conn)
	}
	wait := ctx
	if db.opts.Timeout > 0 {
		var cancel context.CancelFunc
		wait, cancel = context.WithTimeout(ctx, db.opts.Timeout)
		defer cancel()
	}
	if db.opts.Replica {
		if err := db.lockReplica(ctx, wait, conn); err != nil {
			return err
		}
	} else {
		got, err := takeLock(ctx, wait, conn, "SELECT pg_try_advisory_lock($1)", lockKey)
		if err != nil {
			return err
		}
		if !got {
			return lockedBy(ctx, conn)
		}
	}
	if _, err := migrate(ctx, conn); err != nil {
		return err
	}
	seq, epoch, err := readSeq(ctx, conn)
	if err != nil {
		return err
	}
	db.seq, db.seqEpoch = seq, epoch
	return nil
}

// lockedBy is ErrLocked, saying so when replicas hold the lock (in shared
// mode).
func lockedBy(ctx context.Context, conn *pgx.Conn) error {
	var shared int
	err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock' AND granted
	AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
	AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid AND objsubid = 1`, lockKey).Scan(&shared)
	if err != nil || shared == 0 {
		return ErrLocked
	}
	return fmt.Errorf("%w: %d ringfence-server replicas share it (they hold its lock in shared mode)", ErrLocked, shared)
}

// Host is the database server's host (or unix socket directory) and port,
// for the log: never the URL, which may hold a password.
func (db *DB) Host() string { return db.cfg.Host + ":" + strconv.Itoa(int(db.cfg.Port)) }

// Database is the database's name, for the log.
func (db *DB) Database() string { return db.cfg.Database }

// where names the database in errors.
func (db *DB) where() string { return fmt.Sprintf("database %q on %s", db.Database(), db.Host()) }

func (db *DB) dial(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, db.cfg)
	if err != nil {
		return nil, fmt.Errorf("fleetpg: connect to %s: %w", db.where(), err)
	}
	return conn, nil
}

// takeLock takes an advisory lock on conn with try (a pg_try_advisory_lock
// function of key), asking again every lockPoll until wait ends: it
// reports whether it got it.
func takeLock(ctx, wait context.Context, conn *pgx.Conn, try string, key int64) (bool, error) {
	for {
		var got bool
		if err := conn.QueryRow(ctx, try, key).Scan(&got); err != nil {
			if wait.Err() != nil {
				return false, nil // the wait ended during the question (wait may be ctx)
			}
			return false, fmt.Errorf("fleetpg: take the database's lock: %w", err)
		}
		if got {
			return true, nil
		}
		t := time.NewTimer(lockPoll)
		select {
		case <-wait.Done():
			t.Stop()
			return false, nil
		case <-t.C:
		}
	}
}

// readSeq reads commit_seq: the number of the last commit and the epoch
// of the lease it ran under.
func readSeq(ctx context.Context, q querier) (seq, epoch int64, err error) {
	if err := q.QueryRow(ctx, "SELECT coalesce(max(seq), 0), coalesce(max(epoch), 0) FROM commit_seq").Scan(&seq, &epoch); err != nil {
		return 0, 0, fmt.Errorf("fleetpg: read commit_seq: %w", err)
	}
	return seq, epoch, nil
}

// closeConn ends conn's session, which releases its lock.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_ = conn.Close(ctx)
}

// drop forgets the connection, closing it if it is still open.
func (db *DB) drop() {
	if db.conn != nil {
		closeConn(db.conn)
		db.conn = nil
	}
}

// ready makes sure db.conn is a live session. A new one (after the last
// one broke: the database restarted, the network failed) takes the lock
// again, waiting until ctx ends for PostgreSQL to end the old session
// (whose transaction then either committed or never will), and reads
// commit_seq: where this DB left it, or one on when the commit in flight
// took effect; anything else means the database holds commits the server
// does not know of, and db.failed says so. The caller holds db.mu.
func (db *DB) ready(ctx context.Context) error {
	if db.conn != nil && !db.conn.IsClosed() {
		return nil
	}
	db.drop()
	conn, err := db.dial(ctx)
	if err != nil {
		return err
	}
	if db.opts.ReadOnly {
		db.conn = conn
		return nil
	}
	if db.opts.Replica {
		return db.readyReplica(ctx, conn)
	}
	got, err := takeLock(ctx, ctx, conn, "SELECT pg_try_advisory_lock($1)", lockKey)
	if err == nil && !got {
		err = fmt.Errorf("fleetpg: reconnected to %s, but did not get its lock in time: another session holds it "+
			"(this server's previous connection, which PostgreSQL ends once it notices the connection is gone, or another ringfence-server), "+
			"or the database is slow to answer", db.where())
	}
	if err != nil {
		closeConn(conn)
		return err
	}
	seq, _, err := readSeq(ctx, conn)
	if err != nil {
		closeConn(conn)
		return err
	}
	switch {
	case seq == db.seq:
		db.inflight, db.unknown = 0, 0
	case db.inflight != 0 && seq == db.inflight:
		db.seq, db.inflight = seq, 0
	case db.unknown != 0 && seq == db.unknown:
		db.failed = fmt.Errorf("fleetpg: commit %d, which this server reported as failed (its connection broke before PostgreSQL answered), "+
			"took effect after all: the server's state no longer matches %s; restart ringfence-server, which loads it as it is", seq, db.where())
	default:
		db.failed = fmt.Errorf("fleetpg: %s was written meanwhile by someone else (its commit_seq is %d, this server last wrote %d): "+
			"the server's state no longer matches it; stop whatever else writes it, and restart ringfence-server, which loads it as it is", db.where(), seq, db.seq)
	}
	if db.failed != nil {
		closeConn(conn)
		return db.failed
	}
	db.conn = conn
	return nil
}

// readyReplica is ready's work on a replica's new connection: its locks,
// then commit_seq (reconcile).
func (db *DB) readyReplica(ctx context.Context, conn *pgx.Conn) error {
	if err := db.lockReplica(ctx, ctx, conn); err != nil {
		closeConn(conn)
		return err
	}
	seq, epoch, err := readSeq(ctx, conn)
	if err != nil {
		closeConn(conn)
		return err
	}
	db.reconcile(seq, epoch)
	db.conn = conn
	return nil
}

// Load reads the whole state in one read-only, repeatable-read
// transaction: one snapshot of the database. A value that does not decode
// is an error wrapping ErrDamaged that names the table and the key.
func (db *DB) Load() (fleetdb.State, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return fleetdb.State{}, errClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), db.opts.LoadTimeout)
	defer cancel()
	if err := db.ready(ctx); err != nil {
		return fleetdb.State{}, err
	}
	st, seq, epoch, err := load(ctx, db.conn)
	if err != nil && db.conn.IsClosed() {
		// A connection that broke since the last call (the database
		// restarted): reading again on a new one is safe.
		db.drop()
		if rerr := db.ready(ctx); rerr != nil {
			return fleetdb.State{}, fmt.Errorf("%w (and again after reconnecting: %w)", err, rerr)
		}
		st, seq, epoch, err = load(ctx, db.conn)
		if err != nil && db.conn.IsClosed() {
			db.drop()
		}
	}
	if err == nil && db.opts.Replica {
		// The state is that of commit_seq (seq, epoch), read in the same
		// snapshot: the next commit follows it. Under db.mu, so an
		// Acquire (which sets needLoad) ran wholly before this snapshot
		// or wholly after this Load.
		db.seq, db.seqEpoch = seq, epoch
		db.inflight, db.unknown = 0, 0
		db.needLoad = false
	}
	return st, err
}

// load reads the state and commit_seq (seq, epoch) in one snapshot.
func load(ctx context.Context, conn *pgx.Conn) (st fleetdb.State, seq, epoch int64, err error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return st, 0, 0, fmt.Errorf("fleetpg: load: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	// First: the snapshot is taken by the transaction's first statement.
	if seq, epoch, err = readSeq(ctx, tx); err != nil {
		return st, 0, 0, err
	}
	if err := loadTable(ctx, tx, "hosts", "SELECT id, value FROM hosts ORDER BY id", &st.Hosts); err != nil {
		return st, 0, 0, err
	}
	if err := loadTable(ctx, tx, "rollouts", "SELECT channel::text, value FROM rollouts ORDER BY channel", &st.Rollouts); err != nil {
		return st, 0, 0, err
	}
	if err := loadTable(ctx, tx, "admission", "SELECT id, value FROM admission ORDER BY id", &st.Records); err != nil {
		return st, 0, 0, err
	}
	if err := loadTable(ctx, tx, "tokens", "SELECT id, value FROM tokens ORDER BY id", &st.Tokens); err != nil {
		return st, 0, 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return st, 0, 0, fmt.Errorf("fleetpg: load: %w", err)
	}
	return st, seq, epoch, nil
}

// loadTable decodes every value of a table into a new element of out.
func loadTable[T any](ctx context.Context, tx pgx.Tx, table, query string, out *[]*T) error {
	rows, err := tx.Query(ctx, query)
	if err != nil {
		return fmt.Errorf("fleetpg: load %s: %w", table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var key string
		var raw []byte
		if err := rows.Scan(&key, &raw); err != nil {
			return fmt.Errorf("fleetpg: load %s: %w", table, err)
		}
		x := new(T)
		if err := json.Unmarshal(raw, x); err != nil {
			return fmt.Errorf("%w: table %s, key %.64q: %v; correct or delete that row (psql), or restore the database from a backup",
				ErrDamaged, table, key, err)
		}
		*out = append(*out, x)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("fleetpg: load %s: %w", table, err)
	}
	return nil
}

// Commit stores, in one transaction, what the controller and the registry
// changed: all of it, or (on an error) nothing. It returns once
// PostgreSQL has committed it durably (see the package comment), or after
// Options.CommitTimeout with an error. When the connection breaks before
// PostgreSQL answered, Commit reconnects and reads commit_seq to tell
// whether the commit took effect; when it cannot tell, it reports a
// failure, and should the commit turn out to have taken effect, every
// later commit fails and says to restart the server.
//
// On a replica (Options.Replica) only the leader commits, fenced by its
// lease (see the package comment): Commit fails with ErrNotLeader without
// a lease, ErrLeaseLost when the lease turns out to have expired or been
// taken over, and ErrStale until Load has run after a new epoch or after
// commit_seq moved on; nothing is stored then. A commit whose outcome was
// reported unknown and took effect makes the next one fail with ErrStale
// (Load again), not every later one.
func (db *DB) Commit(cc controller.Changes, rc admission.Changes) error {
	stmts, err := statements(cc, rc)
	if err != nil {
		return err
	}
	if db.opts.Replica {
		db.mu.Lock()
		defer db.mu.Unlock()
		if db.closed {
			return errClosed
		}
		return db.commitReplica(stmts)
	}
	if len(stmts) == 0 {
		return nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	switch {
	case db.closed:
		return errClosed
	case db.opts.ReadOnly:
		return ErrReadOnly
	case db.failed != nil:
		return db.failed
	}
	ctx, cancel := context.WithTimeout(context.Background(), db.opts.CommitTimeout)
	defer cancel()
	if err := db.ready(ctx); err != nil {
		return fmt.Errorf("fleetpg: commit: nothing stored: %w", err)
	}
	next := db.seq + 1
	stmts = append(stmts, stmt{what: "advance commit_seq", sql: fenceSQL, args: []any{next, db.seq}})
	err = send(ctx, db.conn, stmts)
	if err == nil {
		db.seq = next
		return nil
	}
	if !db.conn.IsClosed() {
		// PostgreSQL answered: the transaction was rolled back.
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23502" && pe.TableName == "commit_seq" {
			db.failed = fmt.Errorf("fleetpg: %s holds a commit this server did not make (commit_seq is not %d): someone else writes it; "+
				"stop whatever else writes it, and restart ringfence-server, which loads it as it is", db.where(), db.seq)
			db.drop()
			return fmt.Errorf("fleetpg: commit: nothing stored: %w", db.failed)
		}
		return fmt.Errorf("fleetpg: commit: nothing stored: %w", err)
	}
	db.drop()
	if pgconn.SafeToRetry(err) {
		return fmt.Errorf("fleetpg: commit: the connection to %s is lost; nothing was sent, nothing stored (the next commit reconnects): %w", db.where(), err)
	}
	// Whether PostgreSQL committed is not known: ask a new connection.
	db.inflight = next
	rctx, rcancel := context.WithTimeout(context.Background(), db.opts.CommitTimeout)
	defer rcancel()
	rerr := db.ready(rctx)
	switch {
	case db.seq == next:
		return nil // it took effect
	case rerr == nil:
		return fmt.Errorf("fleetpg: commit: the connection to %s broke (%w); reconnected, and the commit did not take effect: nothing stored", db.where(), err)
	case db.failed != nil:
		return fmt.Errorf("fleetpg: commit: nothing stored: %w", db.failed)
	}
	db.inflight, db.unknown = 0, next
	return fmt.Errorf("fleetpg: commit: the connection to %s broke before PostgreSQL answered (%w), and reconnecting failed (%v): "+
		"it is reported as failed; if it took effect after all, the next connection finds out and every later commit fails until ringfence-server restarts",
		db.where(), err, rerr)
}

// fenceSQL moves commit_seq from $2 to $1, or fails the transaction (NOT
// NULL) when it is not at $2. Last in the batch: it fails after the other
// statements ran, and they are rolled back with it. Epoch 0: a commit
// made without a lease.
const fenceSQL = `INSERT INTO commit_seq (one, seq) VALUES (true, $1)
ON CONFLICT (one) DO UPDATE SET seq = CASE WHEN commit_seq.seq = $2 THEN excluded.seq END, epoch = 0`

// stmt is one statement of a commit's batch.
type stmt struct {
	what string // for errors: "upsert hosts"
	sql  string
	args []any
}

// send runs stmts as one batch: one implicit transaction.
func send(ctx context.Context, conn *pgx.Conn, stmts []stmt) error {
	b := &pgx.Batch{}
	for _, s := range stmts {
		b.Queue(s.sql, s.args...)
	}
	br := conn.SendBatch(ctx, b)
	var err error
	for _, s := range stmts {
		if _, e := br.Exec(); e != nil {
			err = fmt.Errorf("%s: %w", s.what, e)
			break
		}
	}
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// statements are the commit's upserts and deletes, in fleetdb's order:
// an id both upserted and deleted ends deleted. Values are encoded here,
// before anything is sent: a value that does not encode fails the commit
// with nothing sent.
func statements(cc controller.Changes, rc admission.Changes) ([]stmt, error) {
	var out []stmt
	hosts := newRows[string]()
	for _, h := range cc.Hosts {
		if err := hosts.add(h.ID, h); err != nil {
			return nil, fmt.Errorf("fleetpg: commit: encode host %.64q: %w; nothing stored", h.ID, err)
		}
	}
	out = hosts.upsert(out, "hosts", "id", "text")
	out = deletes(out, "hosts", cc.Removed)
	rollouts := newRows[int64]()
	for _, r := range cc.Rollouts {
		if err := rollouts.add(int64(r.Channel), r); err != nil {
			return nil, fmt.Errorf("fleetpg: commit: encode the rollout of channel %d: %w; nothing stored", r.Channel, err)
		}
	}
	out = rollouts.upsert(out, "rollouts", "channel", "bigint")
	records := newRows[string]()
	for _, r := range rc.Records {
		if err := records.add(r.ID, r); err != nil {
			return nil, fmt.Errorf("fleetpg: commit: encode the admission record %.64q: %w; nothing stored", r.ID, err)
		}
	}
	out = records.upsert(out, "admission", "id", "text")
	out = deletes(out, "admission", rc.DeletedRecords)
	tokens := newRows[string]()
	for _, t := range rc.Tokens {
		if err := tokens.add(t.ID, t); err != nil {
			return nil, fmt.Errorf("fleetpg: commit: encode token %.64q: %w; nothing stored", t.ID, err)
		}
	}
	out = tokens.upsert(out, "tokens", "id", "text")
	return out, nil
}

// rows are the values to upsert into one table, one per key (the last
// given wins, as with fleetdb's puts), in the order first given.
type rows[K comparable] struct {
	keys []K
	vals []string
	at   map[K]int
}

func newRows[K comparable]() *rows[K] { return &rows[K]{at: map[K]int{}} }

func (r *rows[K]) add(k K, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s := string(jsonbSafe(raw))
	if i, ok := r.at[k]; ok {
		r.vals[i] = s
		return nil
	}
	r.at[k] = len(r.keys)
	r.keys = append(r.keys, k)
	r.vals = append(r.vals, s)
	return nil
}

// upsert appends the statement that upserts r into table, whose key
// column col has SQL type typ. The table and column names are constants.
func (r *rows[K]) upsert(out []stmt, table, col, typ string) []stmt {
	if len(r.keys) == 0 {
		return out
	}
	sql := fmt.Sprintf(`INSERT INTO %[1]s (%[2]s, value) SELECT k, v::jsonb FROM unnest($1::%[3]s[], $2::text[]) AS u(k, v)
ON CONFLICT (%[2]s) DO UPDATE SET value = excluded.value`, table, col, typ)
	return append(out, stmt{what: "upsert " + table, sql: sql, args: []any{r.keys, r.vals}})
}

// deletes appends the statement that deletes ids from table.
func deletes(out []stmt, table string, ids []string) []stmt {
	if len(ids) == 0 {
		return out
	}
	return append(out, stmt{what: "delete from " + table, sql: "DELETE FROM " + table + " WHERE id = ANY($1::text[])", args: []any{ids}})
}

// jsonbSafe replaces every escaped U+0000 in the JSON b, which jsonb
// cannot hold, by U+FFFD, in place. encoding/json writes U+0000 as \u0000
// (never raw), and a backslash only inside strings.
func jsonbSafe(b []byte) []byte {
	for i := 0; i+1 < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if b[i+1] == 'u' && i+6 <= len(b) && string(b[i+2:i+6]) == "0000" {
			copy(b[i+2:i+6], "fffd")
		}
		i++ // the escaped character: \\ is one backslash
	}
	return b
}

// Backup fails with an error wrapping ErrBackupUnsupported: the database
// is backed up with PostgreSQL's own tools.
func (db *DB) Backup(io.Writer) (int64, error) {
	return 0, fmt.Errorf("%w: back %s up with PostgreSQL's own tools instead: pg_dump (pg_dump --format=custom --file=FILE DATABASE-URL), "+
		"or your provider's backups and point-in-time recovery", ErrBackupUnsupported, db.where())
}

// Close closes the database: a replica first releases the leader lease
// it holds (at once, so that another replica takes over without waiting
// for it to expire; best effort, within a few seconds), then the locks go
// and the session ends, and the inbox's connections close (those in use
// when they are given back). A second Close does nothing.
func (db *DB) Close() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return nil
	}
	db.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	// The inbox's pool starts closing now (new calls get errClosed), and
	// is waited for last, within what is left of closeTimeout.
	defer closePool(db.inbox)(ctx)
	if db.opts.Replica && db.held {
		_ = db.release(ctx, db.lease) // the lease expires in any case
	}
	if db.conn == nil {
		return nil
	}
	if !db.opts.ReadOnly && !db.conn.IsClosed() {
		// At once, rather than when the server process of the session
		// exits: the server's lock (exclusive or shared) and a
		// replica's own.
		_, _ = db.conn.Exec(ctx, "SELECT pg_advisory_unlock_all()")
	}
	err := db.conn.Close(ctx)
	db.conn = nil
	if err != nil {
		return fmt.Errorf("fleetpg: close: %w", err)
	}
	return nil
}

package fleetpg

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
)

// The telemetry inbox: see the package comment, "Telemetry inbox".

// Defaults and bounds of the inbox's Options.
const (
	DefaultInboxConns = 4
	MaxInboxConns     = 64
	DefaultMaxInbox   = 200_000
	// DefaultMaxInboxBody is wire.MaxBody: a batch a host may send.
	DefaultMaxInboxBody = 1 << 20
	MaxInboxBodyLimit   = 64 << 20
)

// Bounds of an InboxItem and of the inbox's calls.
const (
	maxHostID         = 200  // bytes of a host id
	maxInboxSignature = 1024 // bytes of a signature header's value (ed25519=base64: 96)
	maxInboxName      = maxHolder
	// MaxInboxRead bounds the rows one Inbox call returns, and
	// maxInboxReadBytes their bodies: a call returns fewer rows (at
	// least one) rather than more bytes.
	MaxInboxRead      = 10_000
	maxInboxReadBytes = 64 << 20
	// MaxConsumed bounds the ids one CommitConsumed deletes.
	MaxConsumed = 100_000
	// inboxRecount is how often Enqueue counts the inbox's rows for
	// ErrInboxFull; between counts it adds its own inserts and takes
	// away its own CommitConsumed deletes.
	inboxRecount = time.Second
)

// InboxItem is a telemetry batch a replica took (verified) for the leader.
type InboxItem struct {
	ID         int64 // set by the database
	HostID     string
	Body       []byte
	Signature  string    // the wire signature header's value
	ReceivedAt time.Time // set by the database
	ReceivedBy string    // the replica's name
	// Stranger: the key is not in the fleet (pending, or never heard of).
	// Anyone can make keys, so strangers' batches may fill no more than
	// a quarter of the inbox (MaxInbox/4): a flood of new keys leaves
	// the rest to the fleet's hosts. Not stored.
	Stranger bool
}

// ErrInboxFull is returned by Enqueue while the inbox holds
// Options.MaxInbox rows or more.
var ErrInboxFull = errors.New("fleetpg: the telemetry inbox in the database is full: the leader is not applying it. " +
	"Check that a replica leads (SELECT holder, expires_at > now() FROM leader_lease) and that its log shows no failing commits; " +
	"hosts keep their batches and send them again")

// inboxDefaults fills in and bounds the inbox's Options.
func inboxDefaults(o *Options) error {
	if o.InboxConns <= 0 {
		o.InboxConns = DefaultInboxConns
	}
	if o.MaxInbox <= 0 {
		o.MaxInbox = DefaultMaxInbox
	}
	if o.MaxInboxBody <= 0 {
		o.MaxInboxBody = DefaultMaxInboxBody
	}
	if o.InboxConns > MaxInboxConns {
		return fmt.Errorf("fleetpg: Options.InboxConns is at most %d, not %d", MaxInboxConns, o.InboxConns)
	}
	if o.MaxInboxBody > MaxInboxBodyLimit {
		return fmt.Errorf("fleetpg: Options.MaxInboxBody is at most %d bytes, not %d", MaxInboxBodyLimit, o.MaxInboxBody)
	}
	return nil
}

// checkText refuses what a text column cannot hold (NUL, invalid UTF-8),
// what is longer than max bytes, and, unless empty, "": what names the
// field.
func checkText(what, s string, max int, empty bool) error {
	switch {
	case s == "" && !empty:
		return fmt.Errorf("fleetpg: the %s is empty", what)
	case len(s) > max:
		return fmt.Errorf("fleetpg: the %s is %d bytes, the limit is %d", what, len(s), max)
	case !utf8.ValidString(s) || strings.ContainsRune(s, 0):
		return fmt.Errorf("fleetpg: the %s %.64q is not UTF-8 text without NUL", what, s)
	}
	return nil
}

const enqueueSQL = `INSERT INTO telemetry_inbox (host_id, digest, body, signature, received_by) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (host_id, digest) DO NOTHING`

// Enqueue stores it in the inbox: durably when it returns nil (the
// insert's transaction committed). The same body again from the same host
// (by SHA-256) is no new row: dup is true, with no error. It fails with
// ErrInboxFull while the inbox holds Options.MaxInbox rows (counted at
// most every second or so, so the bound is approximate), and with an
// error, nothing stored, when the database cannot be reached: the host
// sends the batch again. It needs no lease, and runs on the inbox's
// connections, concurrently with other calls, within
// Options.CommitTimeout. A connection kept from
// earlier that turns out broken (the database restarted) is replaced and
// the insert tried once more, which the dedup makes safe.
func (db *DB) Enqueue(ctx context.Context, it InboxItem) (dup bool, err error) {
	if db.opts.ReadOnly {
		return false, ErrReadOnly
	}
	if err := checkText("host id", it.HostID, maxHostID, false); err != nil {
		return false, err
	}
	if err := checkText("signature", it.Signature, maxInboxSignature, true); err != nil {
		return false, err
	}
	if err := checkText("replica name", it.ReceivedBy, maxInboxName, true); err != nil {
		return false, err
	}
	if len(it.Body) > db.opts.MaxInboxBody {
		return false, fmt.Errorf("fleetpg: enqueue: the body is %d bytes, the limit is %d", len(it.Body), db.opts.MaxInboxBody)
	}
	ctx, cancel := context.WithTimeout(ctx, db.opts.CommitTimeout)
	defer cancel()
	sum := sha256.Sum256(it.Body)
	body := it.Body
	if body == nil {
		body = []byte{} // bytea NOT NULL
	}
	err = db.inboxDo(ctx, func(conn *pgx.Conn) error {
		if err := db.inboxRoom(ctx, conn, it.Stranger); err != nil {
			return err
		}
		tag, err := conn.Exec(ctx, enqueueSQL, it.HostID, sum[:], body, it.Signature, it.ReceivedBy)
		if err != nil {
			return fmt.Errorf("fleetpg: enqueue a batch of host %.64q: nothing stored: %w", it.HostID, err)
		}
		dup = tag.RowsAffected() == 0
		return nil
	})
	if err != nil {
		return false, err
	}
	if !dup {
		db.inboxCount.add(1)
	}
	return dup, nil
}

// inboxCount is Enqueue's estimate of the inbox's rows.
type inboxCount struct {
	mu       sync.Mutex
	n        int           // as last counted, plus this DB's inserts, less its deletes, since
	at       time.Time     // when counted; zero: never
	counting bool          // a count runs: the others use n meanwhile
	every    time.Duration // between counts; zero: inboxRecount; negative: at every call (tests)
}

func (c *inboxCount) add(d int) {
	c.mu.Lock()
	c.n = max(c.n+d, 0)
	c.mu.Unlock()
}

// countSQL counts the inbox's rows, up to $1: at the bound it need not
// read further.
const countSQL = `SELECT count(*) FROM (SELECT FROM telemetry_inbox LIMIT $1) AS r`

// inboxRoom is ErrInboxFull when the inbox holds MaxInbox rows or more
// (a quarter of that for a stranger's batch),
// counting them on conn when the last count is older than inboxRecount
// and no other call is counting.
func (db *DB) inboxRoom(ctx context.Context, conn *pgx.Conn, stranger bool) error {
	c := &db.inboxCount
	every := inboxRecount
	c.mu.Lock()
	if c.every > 0 {
		every = c.every
	}
	count := !c.counting && (c.at.IsZero() || time.Since(c.at) >= every || c.every < 0)
	if count {
		c.counting = true
	}
	n := c.n
	c.mu.Unlock()
	if count {
		var got int
		err := conn.QueryRow(ctx, countSQL, db.opts.MaxInbox).Scan(&got)
		c.mu.Lock()
		c.counting = false
		if err == nil {
			c.n, c.at, n = got, time.Now(), got
		}
		c.mu.Unlock()
		if err != nil {
			return fmt.Errorf("fleetpg: enqueue: count the inbox's rows: nothing stored: %w", err)
		}
	}
	if n >= db.opts.MaxInbox {
		return fmt.Errorf("%w (%d rows, Options.MaxInbox)", ErrInboxFull, n)
	}
	if limit := max(db.opts.MaxInbox/4, 1); stranger && n >= limit {
		return fmt.Errorf("%w for keys not in the fleet (%d rows, a quarter of Options.MaxInbox: the rest is kept for the fleet's hosts)", ErrInboxFull, n)
	}
	return nil
}

const inboxSQL = `SELECT id, host_id, body, signature, received_at, received_by FROM telemetry_inbox ORDER BY id LIMIT $1`

// Inbox returns up to max of the rows visible now, oldest (lowest id)
// first: at most MaxInboxRead, and fewer (at least one) when their bodies
// add up to more than 64 MiB. Rows are consumed by deleting them
// (CommitConsumed), never by remembering the last id read: a row that
// commits after a higher id was read is returned by a later call, not
// skipped (see the package comment). Any DB may read it; the leader does.
// Options.CommitTimeout bounds it.
func (db *DB) Inbox(ctx context.Context, max int) ([]InboxItem, error) {
	if max < 1 {
		return nil, fmt.Errorf("fleetpg: read the inbox: ask for at least one row, not %d", max)
	}
	max = min(max, MaxInboxRead)
	ctx, cancel := context.WithTimeout(ctx, db.opts.CommitTimeout)
	defer cancel()
	var out []InboxItem
	err := db.inboxDo(ctx, func(conn *pgx.Conn) error {
		out = out[:0]
		rows, err := conn.Query(ctx, inboxSQL, max)
		if err != nil {
			return fmt.Errorf("fleetpg: read the inbox: %w", err)
		}
		defer rows.Close()
		size := 0
		for rows.Next() {
			var it InboxItem
			if err := rows.Scan(&it.ID, &it.HostID, &it.Body, &it.Signature, &it.ReceivedAt, &it.ReceivedBy); err != nil {
				return fmt.Errorf("fleetpg: read the inbox: %w", err)
			}
			out = append(out, it)
			if size += len(it.Body); size >= maxInboxReadBytes {
				break
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("fleetpg: read the inbox: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// InboxLen is the number of rows in the inbox (an exact count: for
// metrics and tests). Options.CommitTimeout bounds it.
func (db *DB) InboxLen(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, db.opts.CommitTimeout)
	defer cancel()
	var n int
	err := db.inboxDo(ctx, func(conn *pgx.Conn) error {
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM telemetry_inbox").Scan(&n); err != nil {
			return fmt.Errorf("fleetpg: count the inbox's rows: %w", err)
		}
		return nil
	})
	return n, err
}

// CommitConsumed is Commit (the same fencing by the lease and commit_seq,
// the same outcomes) that also deletes the inbox rows whose ids are
// consumed, in the same transaction: the batches and their effects go
// together, or neither (a leader fenced out deletes nothing). It runs even
// when cc and rc are empty (batches that changed nothing are deleted
// still). Ids not in the inbox are ignored. Replicas only: ErrNotReplica
// otherwise.
func (db *DB) CommitConsumed(cc controller.Changes, rc admission.Changes, consumed []int64) error {
	if !db.opts.Replica {
		return ErrNotReplica
	}
	if len(consumed) > MaxConsumed {
		return fmt.Errorf("fleetpg: commit: nothing stored: %d consumed inbox rows, the limit is %d: commit fewer at a time", len(consumed), MaxConsumed)
	}
	stmts, err := statements(cc, rc)
	if err != nil {
		return err
	}
	if len(consumed) > 0 {
		stmts = append(stmts, stmt{what: "delete the consumed inbox rows", sql: "DELETE FROM telemetry_inbox WHERE id = ANY($1::bigint[])", args: []any{consumed}})
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return errClosed
	}
	if err := db.commitReplica(stmts); err != nil {
		return err
	}
	db.inboxCount.add(-len(consumed))
	return nil
}

// inboxDo runs fn on one of the inbox's connections. When fn fails
// because a reused connection broke (it was kept from before a restart),
// fn runs once more on another (see withConn): fn must be safe to run
// twice. A new connection that breaks is not tried again: the database
// is down.
func (db *DB) inboxDo(ctx context.Context, fn func(*pgx.Conn) error) error {
	what := fmt.Sprintf("one of the inbox's %d connections to %s", db.opts.InboxConns, db.where())
	return withConn(ctx, db.inbox, what, fn, func(_ error, reused bool) bool { return reused })
}

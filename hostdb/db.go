// Package hostdb keeps the host's local database, state.db: the install
// history, the quarantine list, the per-channel pins and the telemetry
// outbox. It is the only package that imports bbolt.
//
// state.db is a convenience, never a dependency of booting: the boot record
// alone decides what loads. Losing or corrupting state.db must therefore
// never stop a host, so Open reports every kind of damage as ErrCorrupt
// (bbolt errors, failed consistency checks, undecodable values, and the
// panics and memory faults bbolt can raise on corrupt pages), and
// OpenOrReset moves a corrupt file aside and starts a fresh one.
//
// # Layout
//
// One top-level bucket per concern; adding a concern (such as a telemetry
// outbox) means adding a bucket to the buckets table and, if its values
// change meaning, raising schemaVersion.
//
//	meta        "schema" -> schema version (JSON number)
//	history     8-byte big-endian sequence -> Transition (JSON)
//	quarantine  4-byte channel + 4-byte version, big-endian -> Quarantine (JSON)
//	pins        4-byte big-endian channel -> pin (JSON)
//	outbox      8-byte big-endian event seq -> wire.Event (JSON)
//	outbox-ids  deterministic event id -> 8-byte big-endian counter (queued once)
//
// Big-endian keys sort numerically, so cursors walk history in insertion
// order and the quarantine list by channel, then version. Values are JSON
// rather than a binary encoding because state.db is small, rarely written
// and read by people in a crisis: `bbolt get` shows them as they are, and
// fields can be added without breaking older readers; the schema version in
// meta covers changes that are not additive.
//
// Every store is bounded: history keeps the newest MaxHistory transitions,
// the quarantine list the newest MaxQuarantined entries, pins at most
// MaxPins channels, the outbox MaxOutbox events (beyond that heartbeats,
// then other non-critical events, are evicted oldest first; critical ones
// up to MaxOutboxCritical never are), and free-text reasons at most
// MaxReasonLen bytes.
package hostdb

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/failpoint"
)

// Bounds on what state.db holds.
const (
	// MaxHistory is the number of transitions History keeps; Record drops
	// the oldest beyond it.
	MaxHistory = 10_000
	// MaxQuarantined is the number of quarantine entries kept; Quarantine
	// drops the oldest beyond it. Real hosts stay far below it.
	MaxQuarantined = 10_000
	// MaxPins is the number of channels that can be pinned at once.
	MaxPins = 1024
	// MaxReasonLen is the length in bytes beyond which reasons are cut.
	MaxReasonLen = 1024
)

// DefaultTimeout is how long Open waits for another process to release
// state.db when Options.Timeout is zero.
const DefaultTimeout = 2 * time.Second

// schemaVersion is the version of the layout described in the package
// documentation. Open refuses a database with a newer version.
const schemaVersion = 1

// fileMode is the mode of a newly created state.db.
const fileMode = 0o600

// Options configure Open and OpenOrReset.
type Options struct {
	// ReadOnly opens state.db with a shared lock and refuses every write
	// with ErrReadOnly. It never creates, initializes or repairs the file,
	// so it works on a read-only disk (offline recovery, `ringfence
	// status`). While a read-write DB is open, a read-only Open gets
	// ErrLocked.
	ReadOnly bool
	// Clock stamps transitions and quarantine entries that carry no time,
	// and names a file OpenOrReset moves aside; nil means clock.System.
	Clock clock.Clock
	// Timeout is how long to wait for the file lock; zero or less means
	// DefaultTimeout.
	Timeout time.Duration
}

// DB is an open state.db. Its methods are safe for concurrent use.
//
// A method that returns ErrCorrupt has found damage that the checks in Open
// could not: close the DB and open it again with OpenOrReset.
type DB struct {
	bolt     *bolt.DB
	clock    clock.Clock
	readOnly bool

	// Bounds; the Max constants, lowered by tests.
	maxHistory     uint64
	maxQuarantined int
	maxOutbox      int // MaxOutbox; tests lower it
	maxPins        int
}

// Open opens the state database at path, creating it unless opts.ReadOnly is
// set. Open reads the whole file before it returns and reports any damage as
// ErrCorrupt; a lock held beyond opts.Timeout as ErrLocked; a newer schema as
// ErrSchema. Other errors (a missing file in read-only mode, permissions)
// are returned wrapped as they are.
//
// In read-write mode, Open first checks an existing file through a read-only
// handle, so that a corrupt file is never opened for writing and is closed
// cleanly before OpenOrReset moves it aside.
func Open(path string, opts Options) (*DB, error) {
	if opts.Clock == nil {
		opts.Clock = clock.System{}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	db := &DB{
		clock:          opts.Clock,
		readOnly:       opts.ReadOnly,
		maxHistory:     MaxHistory,
		maxQuarantined: MaxQuarantined,
		maxOutbox:      MaxOutbox,
		maxPins:        MaxPins,
	}

	info, err := os.Stat(path)
	created := errors.Is(err, fs.ErrNotExist) || err == nil && info.Size() == 0
	switch {
	case errors.Is(err, fs.ErrNotExist) && !opts.ReadOnly:
		// bbolt creates it.
	case err != nil:
		return nil, fmt.Errorf("hostdb: open %s: %w", path, err)
	case info.Size() == 0 && opts.ReadOnly:
		// bbolt would try to initialize it, which a read-only handle cannot.
		return nil, fmt.Errorf("%w: %s is empty", ErrCorrupt, path)
	case info.Size() > 0 && !opts.ReadOnly:
		if err := checkFile(path, opts.Timeout); err != nil {
			return nil, err
		}
	}

	db.bolt, err = openBolt(path, opts.ReadOnly, opts.Timeout)
	if err != nil {
		return nil, err
	}
	// The power-cut tests leave out bbolt's syncs to show they are needed.
	db.bolt.NoSync = failpoint.Skip(SkipSync)
	if opts.ReadOnly {
		err = check(db.bolt, path)
	} else {
		err = db.init()
	}
	if err == nil && created && !opts.ReadOnly {
		// bbolt syncs the file it creates but not the directory entry:
		// without this, a power cut could take the whole new file, and
		// with it the first quarantine entries, away.
		err = atomicfile.SyncDir(filepath.Dir(path))
		err = wrap("create "+path, err)
	}
	if err != nil {
		_ = db.bolt.Close()
		return nil, err
	}
	return db, nil
}

// SkipSync names bbolt's commit syncs for the power-cut tests
// (failpoint.EnvSkip).
const SkipSync = "hostdb/sync"

// Close releases the database and its lock.
func (db *DB) Close() error {
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("hostdb: close: %w", err)
	}
	return nil
}

// checkFile opens path read-only, checks it and closes it again.
func checkFile(path string, timeout time.Duration) error {
	bdb, err := openBolt(path, true, timeout)
	if err != nil {
		return err
	}
	err = check(bdb, path)
	if cerr := bdb.Close(); err == nil && cerr != nil {
		return fmt.Errorf("hostdb: open %s: %w", path, cerr)
	}
	return err
}

// openBolt opens path with bbolt, sorting its failures into ErrLocked,
// errors of the operating system (returned as they are) and ErrCorrupt.
func openBolt(path string, readOnly bool, timeout time.Duration) (_ *bolt.DB, err error) {
	var file *os.File
	opts := &bolt.Options{
		Timeout:  timeout,
		ReadOnly: readOnly,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	}
	var bdb *bolt.DB
	err = guard("open "+path, func() error {
		var err error
		bdb, err = bolt.Open(path, fileMode, opts)
		return err
	})
	switch {
	case err == nil:
		return bdb, nil
	case errors.Is(err, ErrCorrupt):
		// bbolt panicked half-way and could not clean up: release the file
		// (and with it the lock) ourselves. The mapping of the file, if any,
		// stays until the process exits.
		if file != nil {
			_ = file.Close()
		}
		return nil, err
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s (waited %v)", ErrLocked, path, timeout)
	case file == nil || isSystemError(err):
		return nil, fmt.Errorf("hostdb: open %s: %w", path, err)
	default:
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
	}
}

// isSystemError reports whether err came from the operating system (a
// missing file, permissions, a failing disk) rather than from bbolt finding
// the file's content wrong. Those are not cured by resetting the database.
func isSystemError(err error) bool {
	var pathErr *fs.PathError
	var errno syscall.Errno
	return errors.As(err, &pathErr) || errors.As(err, &errno)
}

// guard runs fn and turns a panic in it into ErrCorrupt. bbolt trusts the
// pages it reads and panics on many kinds of damage; a page offset that
// points past the mapped file faults instead, which SetPanicOnFault turns
// into a panic too. bbolt's View and Update roll their transaction back on
// a panic, so the DB can still be closed afterwards.
func guard(op string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: %v", ErrCorrupt, op, r)
		}
	}()
	return fn()
}

// view runs fn in a read transaction under guard.
func (db *DB) view(op string, fn func(tx *bolt.Tx) error) error {
	return wrap(op, guard(op, func() error { return db.bolt.View(fn) }))
}

// update runs fn in a write transaction under guard, or returns ErrReadOnly.
func (db *DB) update(op string, fn func(tx *bolt.Tx) error) error {
	if db.readOnly {
		return fmt.Errorf("%w: cannot %s", ErrReadOnly, op)
	}
	return wrap(op, guard(op, func() error { return db.bolt.Update(fn) }))
}

// wrap names op in err unless err is one of ours, which already says what
// went wrong.
func wrap(op string, err error) error {
	for _, ours := range []error{ErrCorrupt, ErrLocked, ErrReadOnly, ErrSchema, ErrFull} {
		if errors.Is(err, ours) {
			return err
		}
	}
	if err != nil {
		return fmt.Errorf("hostdb: %s: %w", op, err)
	}
	return nil
}

// corruptf returns ErrCorrupt with details.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// decode unmarshals a stored value, reporting failure as ErrCorrupt.
func decode(bucket, key, value []byte, v any) error {
	if err := json.Unmarshal(value, v); err != nil {
		return corruptf("bucket %s, key %x: %v", bucket, key, err)
	}
	return nil
}

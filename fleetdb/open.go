package fleetdb

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/failpoint"
)

// ErrDamaged is returned when server.db (or a backup of it) is not a
// consistent bbolt database: empty, truncated, overwritten with garbage, or
// failing bbolt's own consistency check. The error that wraps it names the
// file and the two ways out: restore a backup, or start empty on purpose.
var ErrDamaged = errors.New("fleetdb: damaged database")

// StartEmptyFlag is the serve flag that starts on an empty database when
// server.db is damaged; the advice in ErrDamaged's errors names it.
const StartEmptyFlag = "--start-empty"

// damagedSuffix is inserted between a damaged file's name and the UTC time
// it was moved aside: server.db.damaged-20261201T100000Z.
const damagedSuffix = ".damaged-"

// Options configure Open.
type Options struct {
	// Timeout is how long Open waits for another process (a running
	// server) to let go of the database before it fails with ErrLocked;
	// zero waits forever.
	Timeout time.Duration
	// ReadOnly opens with a shared lock and writes nothing, for
	// inspection and backups: the file must exist, and several read-only
	// opens may run at once, but none while a server holds it.
	ReadOnly bool
	// StartEmpty answers a damaged database (ErrDamaged) by moving it
	// aside durably as server.db.damaged-<UTC time> and starting a new,
	// empty one; Recovered then returns where it went. Every rollout, its
	// deny list and every host record are gone: the caller must say so
	// loudly. It needs a writable open.
	//
	// Damage found before bolt.Open (step 1 of Open) is found without the
	// file lock: a server that still ran on that file would keep running
	// on the moved-aside one. It cannot have opened it as it is now (Open
	// refuses such a file), and a file that changes while Open reads it
	// is ErrLocked, not damaged.
	StartEmpty bool
	// Clock names a moved-aside file by its time; nil means clock.System.
	Clock clock.Clock
}

// SkipSync names bbolt's commit syncs of server.db for the power-cut tests
// (failpoint.EnvSkip).
const SkipSync = "fleetdb/sync"

// DB is an open server.db.
type DB struct {
	db        *bolt.DB
	path      string
	recovered string
}

// Open opens dir/server.db, creating it (and dir) when it does not exist
// unless opts.ReadOnly. It fails with ErrLocked within opts.Timeout when
// another process has it open, and with an error wrapping ErrDamaged when
// it is damaged (unless opts.StartEmpty).
//
// Steps 1 to 4 only read; nothing is written to a damaged file:
//  1. Unlocked, with plain reads: the file must hold a valid meta page,
//     its pages up to the meta's high-water mark and a sound freelist.
//     These are what bbolt reads through its mmap inside bolt.Open, where
//     a short file is a SIGBUS that no recover catches. If this step finds
//     damage but the file changed while it read, a live process is
//     writing it: ErrLocked.
//  2. bolt.Open, which takes the file lock (exclusive, or shared when
//     ReadOnly) before it reads anything.
//  3. Under the lock, with plain reads: every page reachable from the
//     root bucket must lie inside the file, be referenced once and hold
//     elements, keys and values that stay inside it. bbolt's check runs
//     in a goroutine of its own where a fault cannot be turned into a
//     panic, so nothing it will touch may point outside the file.
//  4. bbolt's consistency check (Tx.Check) in a read transaction:
//     double-freed, unreachable or misordered pages.
//  5. The buckets and the schema version (created when writable).
//
// Steps 2 to 5 run under runtime/debug.SetPanicOnFault with a recover, so
// whatever still slips through is ErrDamaged, not a crash.
func Open(dir string, opts Options) (*DB, error) {
	if !opts.ReadOnly {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("fleetdb: state directory: %w", err)
		}
	}
	return openFile(filepath.Join(dir, FileName), opts)
}

// CheckFile checks the database at path (server.db or a backup of it)
// read-only, with the checks of Open. It returns nil, ErrLocked when a
// running server holds it, or an error wrapping ErrDamaged.
func CheckFile(path string) error {
	db, err := openFile(path, Options{ReadOnly: true, Timeout: checkTimeout})
	if err != nil {
		return err
	}
	return db.Close()
}

// checkTimeout is how long CheckFile waits for the file lock.
const checkTimeout = time.Second

// Recovered returns where Open moved a damaged server.db aside when
// Options.StartEmpty made it start empty, and "" otherwise.
func (db *DB) Recovered() string { return db.recovered }

// Path returns the database file's path.
func (db *DB) Path() string { return db.path }

func openFile(path string, opts Options) (*DB, error) {
	if opts.ReadOnly && opts.StartEmpty {
		return nil, errors.New("fleetdb: StartEmpty needs a writable open, not ReadOnly")
	}
	db, err := openChecked(path, opts)
	if err == nil || !opts.StartEmpty || !errors.Is(err, ErrDamaged) {
		return db, err
	}
	clk := opts.Clock
	if clk == nil {
		clk = clock.System{}
	}
	aside, merr := moveAside(path, clk.Now())
	if merr != nil {
		return nil, fmt.Errorf("%w; starting empty failed: %w", err, merr)
	}
	db, err = openChecked(path, opts)
	if err != nil {
		return nil, fmt.Errorf("fleetdb: moved the damaged %s aside to %s, but a new empty one did not open: %w", path, aside, err)
	}
	db.recovered = aside
	return db, nil
}

// moveAside durably renames the damaged file at path to
// path.damaged-<UTC time>, never over an earlier one.
func moveAside(path string, now time.Time) (string, error) {
	base := path + damagedSuffix + now.UTC().Format("20060102T150405Z")
	aside := base
	for i := 1; ; i++ {
		_, err := os.Lstat(aside)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("fleetdb: move the damaged %s aside: %w", path, err)
		}
		aside = fmt.Sprintf("%s-%d", base, i)
	}
	// The damaged content is not ours to make durable (a Sync would need
	// write access, and rewrites nothing): the rename is what must last.
	if err := atomicfile.Rename(path, aside); err != nil {
		return "", fmt.Errorf("fleetdb: move the damaged %s aside: %w", path, err)
	}
	return aside, nil
}

func openChecked(path string, opts Options) (*DB, error) {
	info, err := os.Stat(path)
	created := false
	switch {
	case errors.Is(err, fs.ErrNotExist) && opts.ReadOnly:
		return nil, fmt.Errorf("fleetdb: %s does not exist: no state to open read-only (is the state directory right?): %w", path, err)
	case errors.Is(err, fs.ErrNotExist):
		created = true // a new state directory
	case err != nil:
		return nil, fmt.Errorf("fleetdb: %w", err)
	case !info.Mode().IsRegular():
		return nil, fmt.Errorf("fleetdb: %s is not a regular file (%s); move it away", path, info.Mode().Type())
	default:
		if err := precheck(path); err != nil {
			return nil, err
		}
	}

	// bbolt's file handle, so that a panic inside bolt.Open (which loses
	// the *bolt.DB) does not also leak the descriptor and its lock.
	var file *os.File
	var b *bolt.DB
	err = guard(path, "open", func() error {
		var err error
		b, err = bolt.Open(path, 0o600, &bolt.Options{
			Timeout:         opts.Timeout,
			ReadOnly:        opts.ReadOnly,
			PreLoadFreelist: true, // read the freelist here, under guard, not in Check's goroutine
			OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
				f, err := os.OpenFile(name, flag, perm)
				file = f
				return f, err
			},
		})
		return err
	})
	if err != nil {
		if b == nil && file != nil {
			// After a panic; after an error bbolt closed it and this is a
			// no-op. A mapping bbolt made before the panic stays until the
			// process ends: step 1 makes this path rare.
			_ = file.Close()
		}
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return nil, ErrLocked
		case errors.Is(err, ErrDamaged):
			return nil, err
		case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
			return nil, damaged(path, "bbolt: %v", err)
		}
		return nil, fmt.Errorf("fleetdb: open %s: %w", path, err)
	}
	// The power-cut tests leave out bbolt's syncs to show they are needed.
	b.NoSync = failpoint.Skip(SkipSync)
	db := &DB{db: b, path: path}
	if err := db.verify(); err != nil {
		_ = b.Close()
		return nil, err
	}
	if opts.ReadOnly {
		err = db.guard("read the schema", func() error { return b.View(checkSchema) })
	} else {
		err = db.guard("prepare the buckets", func() error { return b.Update(initSchema) })
	}
	if err == nil && created {
		// bbolt syncs the new file, not the directory entry that names it.
		err = atomicfile.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		_ = b.Close()
		return nil, err
	}
	return db, nil
}

// initSchema creates the buckets and records the schema version, or checks
// the version an existing database records.
func initSchema(tx *bolt.Tx) error {
	for _, name := range buckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	if err := checkSchema(tx); err != nil {
		return err
	}
	// Schema 1 kept every event id taken; the per-host seq replaced them.
	if tx.Bucket(bucketEventsV1) != nil {
		if err := tx.DeleteBucket(bucketEventsV1); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	if v := meta.Get(keySchema); v != nil && string(v) == fmt.Sprint(schemaVersion) {
		return nil
	}
	return meta.Put(keySchema, []byte(fmt.Sprint(schemaVersion)))
}

// checkSchema refuses a schema newer than this server's.
func checkSchema(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return nil
	}
	if v := meta.Get(keySchema); v != nil {
		var n int
		if err := json.Unmarshal(v, &n); err != nil || n > schemaVersion {
			return fmt.Errorf("fleetdb: %s has schema %s; this server knows %d: upgrade ringfence-server", FileName, v, schemaVersion)
		}
	}
	return nil
}

// guard runs fn, which reads the database through bbolt's mmap, and turns
// a panic inside it, or a memory fault (a page past the end of a truncated
// file is a SIGBUS), into an error wrapping ErrDamaged that names op.
// Every read of the whole database (Load) should run under it:
//
//	err := db.guard("load", func() error { return db.db.View(...) })
func (db *DB) guard(op string, fn func() error) error { return guard(db.path, op, fn) }

func guard(path, op string, fn func() error) (err error) {
	// SetPanicOnFault applies to this goroutine only: fn must not hand
	// the mmap to another one.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = damaged(path, "%s: bbolt failed: %v (if 'ringfence-server state check --file %s' passes, this is a bug in ringfence-server: report it)", op, r, path)
		}
	}()
	return fn()
}

// damaged is an error wrapping ErrDamaged: what is wrong with path, and
// what to do.
func damaged(path, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s; restore a backup made with 'ringfence-server state backup' "+
		"(stop the server, copy the backup over %s), or start empty with 'ringfence-server serve %s', "+
		"which moves the damaged file aside: every rollout, its deny list and the host records are then gone, "+
		"so check the signed rollout plans before starting a rollout again",
		ErrDamaged, path, fmt.Sprintf(format, args...), path, StartEmptyFlag)
}

// maxCheckProblems is how many of bbolt's check findings an error lists.
const maxCheckProblems = 5

// verify runs steps 3 and 4 of Open.
func (db *DB) verify() error {
	f, err := os.Open(db.path)
	if err != nil {
		return fmt.Errorf("fleetdb: %w", err)
	}
	defer f.Close()
	m, err := readMeta(f)
	if err == nil {
		err = walkTree(f, m)
	}
	if err != nil {
		return damaged(db.path, "%v", err)
	}
	return db.guard("check", func() error {
		return db.db.View(func(tx *bolt.Tx) error {
			var problems []string
			n := 0
			for err := range tx.Check() { // drained to the end: the checker blocks on a full channel
				if n++; n <= maxCheckProblems {
					problems = append(problems, err.Error())
				}
			}
			if n == 0 {
				return nil
			}
			more := ""
			if n > maxCheckProblems {
				more = fmt.Sprintf(" (and %d more)", n-maxCheckProblems)
			}
			return damaged(db.path, "bbolt's consistency check found %d problems: %s%s", n, strings.Join(problems, "; "), more)
		})
	})
}

// bbolt's file format (go.etcd.io/bbolt/internal/common, format version
// 2), which the checks before and beside bbolt's read without the mmap.
// Integers are in the machine's byte order.
const (
	pageHeaderSize   = 16 // id u64, flags u16, count u16, overflow u32
	elementSize      = 16 // leaf: flags, pos, ksize, vsize u32; branch: pos, ksize u32, pgid u64
	bucketHeaderSize = 16 // root pgid u64, sequence u64; an inline bucket's page follows
	metaSize         = 64 // magic, version, page size, flags u32; root bucket; freelist, pgid, txid, checksum u64
	metaSummed       = 56 // the checksum (FNV-64a) covers the meta before it

	boltMagic   = 0xED0CDAED
	boltVersion = 2

	branchPage   = 0x01
	leafPage     = 0x02
	freelistPage = 0x10
	bucketLeaf   = 0x01

	noFreelist = ^uint64(0)

	// bbolt finds a page size of 1 KiB to 16 MiB (getPageSizeFromSecondMeta).
	minPageSize = 1 << 10
	maxPageSize = 1 << 24
)

var ne = binary.NativeEndian

// meta is the meta page bbolt will use: of the valid ones, the one with the
// highest transaction id.
type meta struct {
	pageSize uint64
	root     uint64 // root bucket's page
	freelist uint64
	hwm      uint64 // high-water mark: pages 0..hwm-1 are in use or free
	txid     uint64
}

// parseMeta decodes the meta in a page that starts at b, and reports whether
// it is valid (magic, version, checksum).
func parseMeta(b []byte) (meta, bool) {
	if len(b) < pageHeaderSize+metaSize {
		return meta{}, false
	}
	m := b[pageHeaderSize : pageHeaderSize+metaSize]
	h := fnv.New64a()
	h.Write(m[:metaSummed])
	ok := ne.Uint32(m[0:]) == boltMagic && ne.Uint32(m[4:]) == boltVersion && ne.Uint64(m[56:]) == h.Sum64()
	return meta{pageSize: uint64(ne.Uint32(m[8:])), root: ne.Uint64(m[16:]), freelist: ne.Uint64(m[32:]),
		hwm: ne.Uint64(m[40:]), txid: ne.Uint64(m[48:])}, ok
}

// readMeta finds the meta pages the way bbolt does (page 0 gives the page
// size; else page 1 at each possible page size) and checks that the file
// holds every page the chosen one counts.
func readMeta(f *os.File) (meta, error) {
	info, err := f.Stat()
	if err != nil {
		return meta{}, err
	}
	size := uint64(info.Size())
	if size == 0 {
		return meta{}, errors.New("the file is empty (0 bytes)")
	}
	read := func(off uint64) (meta, bool) {
		b := make([]byte, pageHeaderSize+metaSize)
		if off+uint64(len(b)) > size {
			return meta{}, false
		}
		if _, err := f.ReadAt(b, int64(off)); err != nil {
			return meta{}, false
		}
		return parseMeta(b)
	}
	var valid []meta
	if m0, ok := read(0); ok {
		valid = append(valid, m0)
		if m0.pageSize >= minPageSize && m0.pageSize <= maxPageSize {
			if m1, ok := read(m0.pageSize); ok {
				valid = append(valid, m1)
			}
		}
	} else {
		for ps := uint64(minPageSize); ps <= maxPageSize; ps <<= 1 {
			if m1, ok := read(ps); ok && m1.pageSize == ps {
				valid = append(valid, m1)
				break
			}
		}
	}
	if len(valid) == 0 {
		return meta{}, fmt.Errorf("neither meta page (page 0 and 1) is valid, in %d bytes", size)
	}
	m := valid[0]
	if len(valid) == 2 && valid[1].txid > m.txid {
		m = valid[1]
	}
	switch {
	case m.pageSize < minPageSize || m.pageSize > maxPageSize:
		return meta{}, fmt.Errorf("meta page of transaction %d: page size %d", m.txid, m.pageSize)
	case len(valid) == 2 && valid[0].pageSize != valid[1].pageSize:
		return meta{}, fmt.Errorf("the meta pages disagree on the page size (%d, %d)", valid[0].pageSize, valid[1].pageSize)
	case m.hwm < 4:
		return meta{}, fmt.Errorf("meta page of transaction %d: %d pages, but bbolt starts with 4", m.txid, m.hwm)
	case m.hwm > size/m.pageSize:
		return meta{}, fmt.Errorf("the file is truncated: %d bytes, but transaction %d has %d pages of %d bytes (%d bytes)",
			size, m.txid, m.hwm, m.pageSize, m.hwm*m.pageSize)
	case m.root < 2 || m.root >= m.hwm:
		return meta{}, fmt.Errorf("meta page of transaction %d: root page %d is outside pages 2..%d", m.txid, m.root, m.hwm-1)
	case m.freelist == noFreelist:
		return meta{}, errors.New("it has no freelist: ringfence-server never writes such a file")
	case m.freelist < 2 || m.freelist >= m.hwm:
		return meta{}, fmt.Errorf("meta page of transaction %d: freelist page %d is outside pages 2..%d", m.txid, m.freelist, m.hwm-1)
	}
	return m, nil
}

// readPage reads page id with its overflow pages, which must lie below the
// high-water mark, and checks that it names itself.
func readPage(f *os.File, m meta, id uint64) ([]byte, error) {
	if id < 2 || id >= m.hwm {
		return nil, fmt.Errorf("page %d is outside pages 2..%d", id, m.hwm-1)
	}
	// readMeta made sure that the file holds every page below hwm.
	p := make([]byte, m.pageSize)
	if _, err := f.ReadAt(p, int64(id*m.pageSize)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	if got := ne.Uint64(p); got != id {
		return nil, fmt.Errorf("page %d: its header says it is page %d", id, got)
	}
	overflow := uint64(ne.Uint32(p[12:]))
	if overflow == 0 {
		return p, nil
	}
	if overflow >= m.hwm-id {
		return nil, fmt.Errorf("page %d: %d overflow pages reach past the last page %d", id, overflow, m.hwm-1)
	}
	p = append(p, make([]byte, overflow*m.pageSize)...)
	if _, err := f.ReadAt(p[m.pageSize:], int64((id+1)*m.pageSize)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return p, nil
}

// checkFreelist checks the freelist page that bbolt loads in bolt.Open.
func checkFreelist(f *os.File, m meta) error {
	p, err := readPage(f, m, m.freelist)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if flags := ne.Uint16(p[8:]); flags != freelistPage {
		return fmt.Errorf("freelist page %d has type %#x", m.freelist, flags)
	}
	start, count := uint64(pageHeaderSize), uint64(ne.Uint16(p[10:]))
	if count == 0xFFFF { // the count is in the first element
		if len(p) < pageHeaderSize+8 {
			return fmt.Errorf("freelist page %d: no room for its count", m.freelist)
		}
		count, start = ne.Uint64(p[pageHeaderSize:]), start+8
	}
	if count > (uint64(len(p))-start)/8 {
		return fmt.Errorf("freelist page %d: %d free page ids do not fit in %d bytes", m.freelist, count, len(p))
	}
	for i := range count {
		if id := ne.Uint64(p[start+8*i:]); id < 2 || id >= m.hwm {
			return fmt.Errorf("freelist page %d: free page %d is outside pages 2..%d", m.freelist, id, m.hwm-1)
		}
	}
	return nil
}

// precheck is step 1 of Open (see there).
func precheck(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("fleetdb: %w", err)
	}
	defer f.Close()
	before, err := fingerprint(f)
	if err != nil {
		return fmt.Errorf("fleetdb: %w", err)
	}
	m, err := readMeta(f)
	if err == nil {
		err = checkFreelist(f, m)
	}
	if err == nil {
		return nil
	}
	if after, ferr := fingerprint(f); ferr == nil && !bytes.Equal(before, after) {
		return ErrLocked // a live writer: a damaged file does not change by itself
	}
	return damaged(path, "%v", err)
}

// fingerprint is the file's size and the start of both meta pages, which a
// writer changes with every commit.
func fingerprint(f *os.File) ([]byte, error) {
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b := binary.AppendUvarint(nil, uint64(info.Size()))
	for _, off := range []int64{0, int64(os.Getpagesize())} {
		buf := make([]byte, pageHeaderSize+metaSize)
		n, err := f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		b = append(b, buf[:n]...)
	}
	return b, nil
}

// walkTree is step 3 of Open: every page reachable from the root bucket,
// nested and inline buckets included, read once without the mmap.
func walkTree(f *os.File, m meta) error {
	seen := map[uint64]bool{0: true, 1: true}
	fl, err := readPage(f, m, m.freelist)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	for i := range uint64(len(fl)) / m.pageSize {
		seen[m.freelist+i] = true
	}
	todo := []uint64{m.root}
	for len(todo) > 0 {
		id := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		p, err := readPage(f, m, id)
		if err != nil {
			return err
		}
		for i := range uint64(len(p)) / m.pageSize {
			if seen[id+i] {
				return fmt.Errorf("page %d is referenced twice (or is the freelist's)", id+i)
			}
			seen[id+i] = true
		}
		children, err := walkNode(p, false)
		if err != nil {
			return fmt.Errorf("page %d: %w", id, err)
		}
		todo = append(todo, children...)
	}
	return nil
}

// walkNode checks that the elements of the page p (a branch, a leaf, or
// the inline page of a bucket) and their keys and values lie inside p, and
// returns the pages it points to. Element positions count from the
// element itself.
func walkNode(p []byte, inline bool) ([]uint64, error) {
	if len(p) < pageHeaderSize {
		return nil, fmt.Errorf("inline bucket of %d bytes", len(p))
	}
	flags, count := ne.Uint16(p[8:]), uint64(ne.Uint16(p[10:]))
	size := uint64(len(p))
	if pageHeaderSize+count*elementSize > size {
		return nil, fmt.Errorf("%d elements do not fit in %d bytes", count, size)
	}
	var children []uint64
	switch {
	case flags == branchPage && !inline:
		if count == 0 {
			return nil, errors.New("empty branch page")
		}
		for i := range count {
			e := pageHeaderSize + i*elementSize
			pos, ksize := uint64(ne.Uint32(p[e:])), uint64(ne.Uint32(p[e+4:]))
			if e+pos+ksize > size {
				return nil, fmt.Errorf("branch element %d: key at %d+%d is outside the page", i, e+pos, ksize)
			}
			children = append(children, ne.Uint64(p[e+8:]))
		}
	case flags == leafPage:
		for i := range count {
			e := pageHeaderSize + i*elementSize
			eflags := ne.Uint32(p[e:])
			pos, ksize, vsize := uint64(ne.Uint32(p[e+4:])), uint64(ne.Uint32(p[e+8:])), uint64(ne.Uint32(p[e+12:]))
			start := e + pos
			if start+ksize+vsize > size {
				return nil, fmt.Errorf("leaf element %d: key and value at %d+%d+%d are outside the page", i, start, ksize, vsize)
			}
			if eflags&bucketLeaf == 0 {
				continue
			}
			v := p[start+ksize : start+ksize+vsize]
			if len(v) < bucketHeaderSize {
				return nil, fmt.Errorf("leaf element %d: bucket header of %d bytes", i, len(v))
			}
			if root := ne.Uint64(v); root != 0 {
				children = append(children, root)
				continue
			}
			// The inline page lies strictly inside p, so this ends.
			more, err := walkNode(v[bucketHeaderSize:], true)
			if err != nil {
				return nil, fmt.Errorf("inline bucket %q: %w", p[start:start+ksize], err)
			}
			children = append(children, more...)
		}
	default:
		return nil, fmt.Errorf("type %#x where a branch or leaf page belongs", flags)
	}
	return children, nil
}

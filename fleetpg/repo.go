package fleetpg

// The shared TUF repository (schema 3, migrations/0003_inbox_repo.sql):
// repo_files holds every file of the signed repository's metadata/ and
// targets/, and is the truth; each replica keeps a local directory (its
// --repo) that it Pulls from the database and serves from. A writer (the
// leader signing a plan, or an operator's publish) Pulls, changes its
// directory with tufrepo, and Pushes the difference. Concurrency is
// optimistic: repo_version goes up by one with every Push, a Push names
// the version it started from and is refused (ErrRepoMoved) if another
// Push happened meanwhile; the writer then Pulls and redoes its work. A
// leader's Push is also fenced by its lease (leaseFenceSQL) in the same
// transaction.
//
// A Push whose connection broke while it committed has an unknown outcome;
// the writer treats it as refused: it Pulls and redoes its change, and
// when the Push had taken effect after all the redo finds nothing to
// change (or changes what another writer changed meanwhile, as with any
// ErrRepoMoved).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ringfence/ringfence/internal/atomicfile"
)

// Bounds of the shared repository, checked by Push (and by Pull against
// what the database holds).
const (
	// MaxRepoFile bounds one file. PostgreSQL's own bound on a bytea
	// value (and on the message that carries it) is just under 1 GiB,
	// so this is 1 GiB less 1 MiB of headroom for the statement.
	MaxRepoFile int64 = 1<<30 - 1<<20
	// MaxRepoTotal bounds the sum of the files' sizes.
	MaxRepoTotal int64 = 64 << 30
	// MaxRepoFiles bounds the number of files.
	MaxRepoFiles = 1_000_000
	// maxRepoPath bounds a file's path (relative to the directory), in
	// bytes.
	maxRepoPath = 1024
)

// DefaultRepoPoll is Watch's poll when it is given none.
const DefaultRepoPoll = 30 * time.Second

// repoChannel is the LISTEN/NOTIFY channel Push notifies (with the new
// version as the payload) in its transaction.
const repoChannel = "ringfence_repo"

// repoConns bounds the connections a Repo has open at once besides its
// watchers' (one each): its pool's.
const repoConns = 4

// repoChunk is how much of a body Pull reads per query: larger files are
// read in slices, so that no more than this of a target is in memory.
const repoChunk = 8 << 20

// Watch's reconnection backoff.
const (
	watchRetryMin = 50 * time.Millisecond
	watchRetryMax = time.Second
)

// The files Pull writes get this mode, as tufrepo's do.
const repoFileMode = 0o644

// timestampPath is written last by Pull: a client that reads it finds
// every file it names already there.
const timestampPath = "metadata/timestamp.json"

// ErrRepoMoved is returned by Push when another writer pushed since the
// version it started from: nothing was stored.
var ErrRepoMoved = errors.New("fleetpg: another writer pushed to the shared repository since this one pulled: pull and redo the change")

// Repo is the shared repository in a database. Any process may open one
// (it takes no lock of the server's); its methods are safe for concurrent
// use, each on a connection of a small pool of its own (pgxpool, at most
// repoConns connections).
type Repo struct {
	cfg       *pgx.ConnConfig
	pool      *pgxpool.Pool
	done      chan struct{} // closed by Close: ends the watchers
	closeOnce sync.Once

	// Bounds (the constants; the tests lower them), and repoChunk.
	maxFile, maxTotal int64
	maxFiles, chunk   int
	// trace, when set (by the tests), sees Pull's writes ("write",
	// path) and removals ("remove", path) in their order, and Push's
	// lease fence ("fence") just before it runs.
	trace func(op, path string)
}

// PullStats is what a Pull did.
type PullStats struct {
	// Version is the repo_version the files pulled are.
	Version int64
	// Written and Removed count the files written (new or changed) and
	// removed in the directory.
	Written, Removed int
}

// parseConfig parses dsn for Open and OpenRepo: errors never quote it
// (pgx's message may quote the URL, password and all: only a file's error,
// which names the file, is passed on), and the session parameters and the
// connect timeout apply.
func parseConfig(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("fleetpg: a file the database URL names: %w", pe)
		}
		return nil, errors.New("fleetpg: the database URL does not parse; its form is " +
			"postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?PARAMETER=VALUE&...] (libpq's connection URIs)")
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	for k, v := range sessionParams {
		if _, ok := cfg.RuntimeParams[k]; !ok {
			cfg.RuntimeParams[k] = v
		}
	}
	return cfg, nil
}

// OpenRepo connects to the database dsn names (as Open does; errors never
// quote dsn) and applies the migrations it lacks, under the migration
// lock (a database whose schema is this build's needs no privilege for
// that but to read schema_migrations). ctx bounds the connection and the
// migrations.
func OpenRepo(ctx context.Context, dsn string) (*Repo, error) {
	cfg, err := parseConfig(dsn)
	if err != nil {
		return nil, err
	}
	pool, err := newPool(dsn, cfg, repoConns)
	if err != nil {
		return nil, err
	}
	r := &Repo{
		cfg: cfg, pool: pool, done: make(chan struct{}),
		maxFile: MaxRepoFile, maxTotal: MaxRepoTotal, maxFiles: MaxRepoFiles, chunk: repoChunk,
	}
	// On a connection of the pool, which keeps it for the first call.
	pc, err := acquire(ctx, pool, r.what())
	if err != nil {
		pool.Close()
		return nil, err
	}
	_, err = migrate(ctx, pc.Conn())
	pc.Release()
	if err != nil {
		pool.Close()
		return nil, err
	}
	return r, nil
}

// where names the database in errors.
func (r *Repo) where() string {
	return fmt.Sprintf("database %q on %s:%d", r.cfg.Database, r.cfg.Host, r.cfg.Port)
}

// what names the pool's connections in errors.
func (r *Repo) what() string { return "a connection to " + r.where() }

// dial makes a connection outside the pool, for Watch.
func (r *Repo) dial(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, r.cfg)
	if err != nil {
		return nil, fmt.Errorf("fleetpg: connect to %s: %w", r.where(), err)
	}
	return conn, nil
}

// Close closes the Repo's connections (those in use when they are given
// back) and ends its watchers (their channels close). A second Close does
// nothing.
func (r *Repo) Close() error {
	r.closeOnce.Do(func() {
		close(r.done)
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		closePool(r.pool)(ctx)
	})
	return nil
}

// run runs fn on a connection of the pool. When fn fails and the
// connection turns out broken (the database restarted since it was last
// used), and again tells whether fn may run once more (it changed
// nothing), it runs on another connection (see withConn).
func (r *Repo) run(ctx context.Context, fn func(*pgx.Conn) error, again func(error) bool) error {
	return withConn(ctx, r.pool, r.what(), fn, func(err error, _ bool) bool { return again(err) })
}

func always(error) bool { return true }

// Version is repo_version now.
func (r *Repo) Version(ctx context.Context) (int64, error) {
	var v int64
	err := r.run(ctx, func(conn *pgx.Conn) error {
		return readRepoVersion(ctx, conn, &v)
	}, always)
	return v, err
}

func readRepoVersion(ctx context.Context, q querier, v *int64) error {
	if err := q.QueryRow(ctx, "SELECT version FROM repo_version WHERE one").Scan(v); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return errors.New("fleetpg: repo_version has no row (it was deleted by hand): " +
				"INSERT INTO repo_version (version) VALUES (0), then push the repository again")
		}
		return fmt.Errorf("fleetpg: read repo_version: %w", err)
	}
	return nil
}

// checkRepoPath refuses a path (slash-separated, relative to the
// repository directory) that repo_files' CHECK would refuse, or that is
// not a plain local name on this system: it must be under metadata/ or
// targets/, without empty, "." or ".." components, backslashes, control
// characters or invalid UTF-8, and at most maxRepoPath bytes.
func checkRepoPath(p string) error {
	bad := func(why string) error {
		return fmt.Errorf("fleetpg: repository path %.200q: %s", p, why)
	}
	switch {
	case len(p) > maxRepoPath:
		return bad(fmt.Sprintf("longer than %d bytes; shorten the name", maxRepoPath))
	case !utf8.ValidString(p):
		return bad("not valid UTF-8; rename the file")
	case strings.ContainsFunc(p, func(c rune) bool { return c < 0x20 || c == 0x7f || c == '\\' }):
		return bad("holds a control character or a backslash; rename the file")
	case !strings.HasPrefix(p, "metadata/") && !strings.HasPrefix(p, "targets/"):
		return bad("not under metadata/ or targets/")
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." {
			return bad(`has an empty, "." or ".." component`)
		}
	}
	if !filepath.IsLocal(filepath.FromSlash(p)) {
		return bad("not a local file name on this system (a reserved name?); rename the file")
	}
	return nil
}

// pullOrder is the order Pull writes files in: targets first, then the
// metadata, and timestamp.json last, so that a client reading the
// directory meanwhile never finds a timestamp (or snapshot) naming
// files not there yet.
func pullOrder(p string) int {
	switch {
	case strings.HasPrefix(p, "targets/"):
		return 0
	case p != timestampPath:
		return 1
	}
	return 2
}

// localFile is a file found in the directory: its kind (from lstat) and
// size.
type localFile struct {
	mode fs.FileMode // type bits only
	size int64
}

// realDir checks that name (slash-separated, in root) is a directory and
// not a symbolic link; with create, a missing one is created.
func realDir(root *os.Root, dir, name string, create bool) error {
	fi, err := root.Lstat(filepath.FromSlash(name))
	if errors.Is(err, fs.ErrNotExist) && !create {
		return fmt.Errorf("fleetpg: %s does not exist: the directory is not a TUF repository", filepath.Join(dir, filepath.FromSlash(name)))
	}
	if errors.Is(err, fs.ErrNotExist) {
		if err := root.Mkdir(filepath.FromSlash(name), 0o755); err != nil {
			return fmt.Errorf("fleetpg: create %s: %w", filepath.Join(dir, name), err)
		}
		// The new directory's name must survive a power cut with the
		// files written into it.
		return atomicfile.SyncDir(filepath.Join(dir, filepath.FromSlash(path.Dir(name))))
	}
	if err != nil {
		return fmt.Errorf("fleetpg: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("fleetpg: %s is a symbolic link; the shared repository is never read or written through one: "+
			"replace it with a directory", filepath.Join(dir, filepath.FromSlash(name)))
	}
	if !fi.IsDir() {
		return fmt.Errorf("fleetpg: %s is not a directory; move it away", filepath.Join(dir, filepath.FromSlash(name)))
	}
	return nil
}

// listLocal lists the files under metadata/ and targets/ of root (which
// must be real directories), without following symbolic links: every
// entry but directories and atomicfile's temporary files, by
// slash-separated path. A directory it cannot read is an error (never
// taken for an empty one).
func listLocal(root *os.Root, dir string, limit int) (map[string]localFile, error) {
	out := map[string]localFile{}
	fsys := root.FS()
	for _, top := range []string{"metadata", "targets"} {
		if err := realDir(root, dir, top, false); err != nil {
			return nil, err
		}
		err := fs.WalkDir(fsys, top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || atomicfile.IsTemp(d.Name()) {
				return nil
			}
			if len(out) >= limit {
				return fmt.Errorf("more than %d files, more than the shared repository may hold", limit)
			}
			lf := localFile{mode: d.Type()}
			if d.Type().IsRegular() {
				fi, err := d.Info()
				if err != nil {
					return err
				}
				lf.size = fi.Size()
			}
			out[p] = lf
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("fleetpg: list %s: %w", filepath.Join(dir, top), err)
		}
	}
	return out, nil
}

// openRegular opens the regular file p of root for reading, and checks
// that what it opened is one (the root keeps it inside the directory).
func openRegular(root *os.Root, p string) (*os.File, int64, error) {
	f, err := root.Open(filepath.FromSlash(p))
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s is no longer a regular file", p)
	}
	return f, fi.Size(), nil
}

// hashLocal is the hex SHA-256 of the regular file p of root, reading at
// most limit bytes (more is an error).
func hashLocal(root *os.Root, p string, limit int64) (string, error) {
	f, _, err := openRegular(root, p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, limit+1))
	if err != nil {
		return "", err
	}
	if n > limit {
		return "", fmt.Errorf("%s grew beyond %d bytes", p, limit)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// dbFile is a file of repo_files as Pull lists it.
type dbFile struct {
	path, etag string
	size       int64
}

// Pull makes dir's metadata/ and targets/ hold exactly the database's
// files, byte for byte, from one snapshot of repo_files and repo_version
// (a repeatable-read transaction). It writes only the files whose content
// differs (the SHA-256 of the local file against etag), each through
// atomicfile, in this order: targets/, then metadata/ but timestamp.json,
// then timestamp.json; and then removes the files (and symbolic links,
// never what they point to) under metadata/ and targets/ that the
// database lacks. Directories are created as needed; a symbolic link
// where a directory is needed is an error (nothing is written through
// one), and every file is reached through an os.Root on dir, so nothing
// outside dir is read or written. Temporary files of atomicfile are left
// alone.
//
// A database without files at version 0 (no one pushed yet) changes
// nothing: Pull returns version 0, and the first replica seeds the
// database with Push. Each body is checked against its etag before it
// replaces anything. An error leaves some files written and others not,
// but timestamp.json is only written once everything before it is, and
// the next Pull finishes the work.
func (r *Repo) Pull(ctx context.Context, dir string) (PullStats, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return PullStats{}, fmt.Errorf("fleetpg: pull into %s: %w", dir, err)
	}
	defer root.Close()
	var st PullStats
	err = r.run(ctx, func(conn *pgx.Conn) error {
		st = PullStats{}
		return pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
			return r.pull(ctx, tx, root, dir, &st)
		})
	}, always) // Pull may run again: a second time finds written what the first wrote
	if err != nil {
		return st, fmt.Errorf("fleetpg: pull the shared repository from %s into %s: %w", r.where(), dir, err)
	}
	return st, nil
}

func (r *Repo) pull(ctx context.Context, tx pgx.Tx, root *os.Root, dir string, st *PullStats) error {
	if err := readRepoVersion(ctx, tx, &st.Version); err != nil {
		return err
	}
	files, err := r.listDB(ctx, tx)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		if st.Version == 0 {
			return nil // nothing pushed yet: the first replica seeds it
		}
		return fmt.Errorf("repo_files is empty at repo_version %d (its rows were deleted by hand?): "+
			"push the repository from a replica's directory that holds it, with base %d", st.Version, st.Version)
	}
	for _, top := range []string{"metadata", "targets"} {
		if err := realDir(root, dir, top, true); err != nil {
			return err
		}
	}
	local, err := listLocal(root, dir, r.maxFiles)
	if err != nil {
		return err
	}
	slices.SortStableFunc(files, func(a, b dbFile) int { return pullOrder(a.path) - pullOrder(b.path) })
	dirsOK := map[string]bool{"metadata": true, "targets": true}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		same, err := r.sameLocal(root, dir, f, local)
		if err != nil {
			return err
		}
		if same {
			continue
		}
		if err := ensureParents(root, dir, f.path, dirsOK); err != nil {
			return err
		}
		if err := r.fetch(ctx, tx, dir, f); err != nil {
			return err
		}
		st.Written++
		if r.trace != nil {
			r.trace("write", f.path)
		}
	}
	inDB := make(map[string]bool, len(files))
	for _, f := range files {
		inDB[f.path] = true
	}
	var gone []string
	for p, lf := range local {
		if !inDB[p] && (lf.mode.IsRegular() || lf.mode&fs.ModeSymlink != 0) {
			gone = append(gone, p)
		}
	}
	slices.Sort(gone)
	synced := map[string]bool{}
	for _, p := range gone {
		if err := root.Remove(filepath.FromSlash(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s, which the shared repository lacks: %w", filepath.Join(dir, filepath.FromSlash(p)), err)
		}
		st.Removed++
		if r.trace != nil {
			r.trace("remove", p)
		}
		synced[path.Dir(p)] = false
	}
	// Removals need not survive a power cut (the next Pull removes the
	// file again), but a durable directory is cheap next to the writes.
	for d := range synced {
		if err := atomicfile.SyncDir(filepath.Join(dir, filepath.FromSlash(d))); err != nil {
			return err
		}
	}
	return nil
}

// listDB lists repo_files (path, etag, size) within the bounds; every
// path must be one Pull can write safely.
func (r *Repo) listDB(ctx context.Context, tx pgx.Tx) ([]dbFile, error) {
	rows, err := tx.Query(ctx, "SELECT path, etag, octet_length(body)::bigint FROM repo_files ORDER BY path")
	if err != nil {
		return nil, fmt.Errorf("list repo_files: %w", err)
	}
	defer rows.Close()
	var files []dbFile
	var total int64
	for rows.Next() {
		var f dbFile
		if err := rows.Scan(&f.path, &f.etag, &f.size); err != nil {
			return nil, fmt.Errorf("list repo_files: %w", err)
		}
		if err := checkRepoPath(f.path); err != nil {
			return nil, fmt.Errorf("repo_files holds a path this replica cannot write (nothing written): %w", err)
		}
		total += f.size
		switch {
		case len(files) >= r.maxFiles:
			return nil, fmt.Errorf("repo_files holds more than %d files", r.maxFiles)
		case f.size > r.maxFile:
			return nil, fmt.Errorf("repo_files holds %s of %d bytes, more than the %d a file may have", f.path, f.size, r.maxFile)
		case total > r.maxTotal:
			return nil, fmt.Errorf("repo_files holds more than %d bytes", r.maxTotal)
		}
		files = append(files, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list repo_files: %w", err)
	}
	return files, nil
}

// sameLocal reports whether dir already holds f, byte for byte, as a
// regular file. A directory in f's place is an error.
func (r *Repo) sameLocal(root *os.Root, dir string, f dbFile, local map[string]localFile) (bool, error) {
	lf, ok := local[f.path]
	switch {
	case !ok:
		// Not listed: missing, or below a directory that is not a real
		// one (ensureParents says so).
		if fi, err := root.Lstat(filepath.FromSlash(f.path)); err == nil && fi.IsDir() {
			return false, fmt.Errorf("%s is a directory, where the shared repository has a file: move it away",
				filepath.Join(dir, filepath.FromSlash(f.path)))
		}
		return false, nil
	case !lf.mode.IsRegular() || lf.size != f.size:
		return false, nil // a symbolic link or such is replaced, never followed
	}
	sum, err := hashLocal(root, f.path, r.maxFile)
	if err != nil {
		return false, nil // unreadable or changed meanwhile: write it anew
	}
	return sum == f.etag, nil
}

// ensureParents checks that every directory above p is a real directory
// of root (not a symbolic link), creating the missing ones: atomicfile
// writes by path, so a link there would be followed. ok caches the
// directories checked.
func ensureParents(root *os.Root, dir, p string, ok map[string]bool) error {
	parts := strings.Split(p, "/")
	cur := parts[0]
	for _, c := range parts[1 : len(parts)-1] {
		cur += "/" + c
		if ok[cur] {
			continue
		}
		if err := realDir(root, dir, cur, true); err != nil {
			return err
		}
		ok[cur] = true
	}
	return nil
}

// fetch writes f's body from the snapshot into dir through atomicfile,
// a slice of r.chunk at a time, and checks it against the etag and the
// size before the file replaces anything.
func (r *Repo) fetch(ctx context.Context, tx pgx.Tx, dir string, f dbFile) error {
	target := filepath.Join(dir, filepath.FromSlash(f.path))
	err := atomicfile.Write(target, repoFileMode, func(w io.Writer) error {
		h := sha256.New()
		var n int64
		for n < f.size || n == 0 {
			var b []byte
			var err error
			if f.size <= int64(r.chunk) {
				err = tx.QueryRow(ctx, "SELECT body FROM repo_files WHERE path = $1", f.path).Scan(&b)
			} else {
				// substring counts from 1.
				err = tx.QueryRow(ctx, "SELECT substring(body FROM $2::int FOR $3::int) FROM repo_files WHERE path = $1",
					f.path, n+1, r.chunk).Scan(&b)
			}
			if err != nil {
				return fmt.Errorf("read it from repo_files: %w", err)
			}
			if len(b) == 0 {
				break
			}
			n += int64(len(b))
			if n > f.size {
				break
			}
			h.Write(b)
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
		if got := hex.EncodeToString(h.Sum(nil)); n != f.size || got != f.etag {
			return fmt.Errorf("repo_files' row is damaged: its body (%d bytes, SHA-256 %s) does not match its etag %s (%d bytes): "+
				"push the repository again from a replica that holds it whole", n, got, f.etag, f.size)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	return nil
}

// pushFile is a file of the directory as Push found it.
type pushFile struct {
	path string
	etag string // hex SHA-256, as hashed before the transaction
}

// Push uploads the difference between dir's metadata/ and targets/ and
// the database: new and changed files upserted with their etag, files
// the directory lacks deleted, in one transaction that first checks that
// repo_version is base (else ErrRepoMoved) and raises it by one, and
// notifies Watch's channel. With fence, the same transaction checks, last
// before it commits, that the lease (fence.Holder at fence.Epoch) is
// still live (else ErrLeaseLost). On any error nothing is stored. When
// the directory holds what the database holds (and base is current),
// nothing is written and Push returns base.
//
// Only regular files count: symbolic links and other special files are
// ignored (never followed), as is anything outside metadata/ and
// targets/ and atomicfile's temporary files. metadata/ and targets/ must
// be real directories, and metadata/root.json and timestamp.json must be
// there: a directory that is not a repository is refused rather than
// emptying the shared one. Every file is bounded by MaxRepoFile, the
// set by MaxRepoFiles and MaxRepoTotal; a name repo_files' CHECK would
// refuse (or that is not portable: a backslash, a control character) is
// refused with an error naming it.
//
// The files are hashed before the transaction, so that it holds
// repo_version's row (which orders concurrent Pushes) only for the
// upload; each changed file is read whole (at most MaxRepoFile) and
// uploaded in a statement of its own.
func (r *Repo) Push(ctx context.Context, dir string, base int64, fence *Lease) (int64, error) {
	fail := func(err error) (int64, error) {
		return 0, fmt.Errorf("fleetpg: push %s to the shared repository in %s: nothing stored: %w", dir, r.where(), err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fail(err)
	}
	defer root.Close()
	files, err := r.scan(root, dir)
	if err != nil {
		return fail(err)
	}
	var newVersion int64
	committing, unknown := false, false
	err = r.run(ctx, func(conn *pgx.Conn) error {
		committing, unknown = false, false
		tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(ctx) }() // after Commit it does nothing
		changed, err := r.push(ctx, tx, root, dir, files, base, fence, &newVersion)
		if err != nil {
			return err
		}
		if !changed {
			newVersion = base // the rollback undoes the raise
			return nil
		}
		committing = true
		err = tx.Commit(ctx)
		// PostgreSQL's answer to COMMIT says what happened; a connection
		// broken before it came does not.
		unknown = err != nil && conn.IsClosed()
		return err
	}, func(error) bool {
		// A transaction whose connection broke before its COMMIT was
		// sent stored nothing: it may run again.
		return !committing
	})
	switch {
	case err == nil:
		return newVersion, nil
	case unknown:
		return 0, fmt.Errorf("fleetpg: push %s to the shared repository in %s: the connection broke while it committed, "+
			"so whether it took effect is not known: pull and redo the change (if it took effect, the redo finds nothing to push): %w",
			dir, r.where(), err)
	}
	return fail(err)
}

// scan lists and hashes the files of dir that Push uploads, within the
// bounds.
func (r *Repo) scan(root *os.Root, dir string) ([]pushFile, error) {
	local, err := listLocal(root, dir, r.maxFiles)
	if err != nil {
		return nil, err
	}
	var files []pushFile
	var total int64
	for p, lf := range local {
		if !lf.mode.IsRegular() {
			continue // a symbolic link, a device...: not repository content, never followed
		}
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := checkRepoPath(p); err != nil {
			return nil, fmt.Errorf("%s: %w", full, err)
		}
		if lf.size > r.maxFile {
			return nil, fmt.Errorf("%s has %d bytes, more than the %d a file of the shared repository may have", full, lf.size, r.maxFile)
		}
		total += lf.size
		if total > r.maxTotal {
			return nil, fmt.Errorf("the files of %s have more than %d bytes together, more than the shared repository may hold", dir, r.maxTotal)
		}
		if len(files) >= r.maxFiles {
			return nil, fmt.Errorf("%s holds more than %d files, more than the shared repository may hold", dir, r.maxFiles)
		}
		sum, err := hashLocal(root, p, r.maxFile)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", full, err)
		}
		files = append(files, pushFile{path: p, etag: sum})
	}
	slices.SortFunc(files, func(a, b pushFile) int { return strings.Compare(a.path, b.path) })
	for _, need := range []string{"metadata/root.json", timestampPath} {
		if _, ok := slices.BinarySearchFunc(files, need, func(f pushFile, p string) int { return strings.Compare(f.path, p) }); !ok {
			return nil, fmt.Errorf("%s lacks %s as a regular file: it is not a whole TUF repository, and pushing it would empty the shared one",
				dir, filepath.FromSlash(need))
		}
	}
	return files, nil
}

// push is Push's transaction, before its commit: changed is false when
// there was nothing to store (the caller rolls back).
func (r *Repo) push(ctx context.Context, tx pgx.Tx, root *os.Root, dir string, files []pushFile, base int64, fence *Lease, newVersion *int64) (changed bool, err error) {
	if fence != nil {
		// Early, to spare a lost leader the upload; the fence proper is
		// leaseFenceSQL, last.
		var live bool
		err := tx.QueryRow(ctx, "SELECT holder = $2 AND epoch = $1 AND expires_at > clock_timestamp() FROM leader_lease WHERE one",
			fence.Epoch, fence.Holder).Scan(&live)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return false, fmt.Errorf("check the leader lease: %w", err)
		}
		if !live {
			return false, leaseLost(fence)
		}
	}
	// Raising the version first takes its row: a concurrent Push waits
	// for this one to end, then finds the version moved.
	err = tx.QueryRow(ctx, "UPDATE repo_version SET version = version + 1 WHERE one AND version = $1 RETURNING version", base).Scan(newVersion)
	if errors.Is(err, pgx.ErrNoRows) {
		var cur int64
		if err := readRepoVersion(ctx, tx, &cur); err != nil {
			return false, err
		}
		return false, fmt.Errorf("the push started from version %d and the shared repository is at %d: %w", base, cur, ErrRepoMoved)
	}
	if err != nil {
		return false, fmt.Errorf("raise repo_version: %w", err)
	}
	stored := map[string]string{}
	rows, err := tx.Query(ctx, "SELECT path, etag FROM repo_files")
	if err != nil {
		return false, fmt.Errorf("list repo_files: %w", err)
	}
	for rows.Next() {
		var p, e string
		if err := rows.Scan(&p, &e); err != nil {
			rows.Close()
			return false, fmt.Errorf("list repo_files: %w", err)
		}
		stored[p] = e
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("list repo_files: %w", err)
	}
	for _, f := range files {
		e, ok := stored[f.path]
		delete(stored, f.path)
		if ok && e == f.etag {
			continue
		}
		if err := r.upload(ctx, tx, root, dir, f.path); err != nil {
			return false, err
		}
		changed = true
	}
	if len(stored) > 0 {
		gone := make([]string, 0, len(stored))
		for p := range stored {
			gone = append(gone, p)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM repo_files WHERE path = ANY($1::text[])", gone); err != nil {
			return false, fmt.Errorf("delete from repo_files: %w", err)
		}
		changed = true
	}
	if !changed {
		return false, nil
	}
	// Delivered to the listeners when the transaction commits, and never
	// if it does not.
	if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", repoChannel, strconv.FormatInt(*newVersion, 10)); err != nil {
		return false, fmt.Errorf("notify %s: %w", repoChannel, err)
	}
	if fence != nil {
		if r.trace != nil {
			r.trace("fence", "")
		}
		if _, err := tx.Exec(ctx, leaseFenceSQL, fence.Epoch, fence.Holder); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "23502" && pe.TableName == "leader_lease" {
				return false, leaseLost(fence)
			}
			return false, fmt.Errorf("check the leader lease: %w", err)
		}
	}
	return true, nil
}

func leaseLost(l *Lease) error {
	return fmt.Errorf("the lease (epoch %d of %q) had expired or was taken over by the database's clock: %w", l.Epoch, l.Holder, ErrLeaseLost)
}

// upload reads the file p of root whole and upserts it: the etag is the
// SHA-256 of the bytes sent.
func (r *Repo) upload(ctx context.Context, tx pgx.Tx, root *os.Root, dir, p string) error {
	full := filepath.Join(dir, filepath.FromSlash(p))
	f, size, err := openRegular(root, p)
	if err != nil {
		return fmt.Errorf("read %s: %w", full, err)
	}
	if size > r.maxFile {
		f.Close()
		return fmt.Errorf("%s has %d bytes, more than the %d a file of the shared repository may have", full, size, r.maxFile)
	}
	body := make([]byte, 0, size)
	body, err = readAllInto(body, io.LimitReader(f, r.maxFile+1))
	f.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", full, err)
	}
	if int64(len(body)) > r.maxFile {
		return fmt.Errorf("%s grew beyond the %d bytes a file of the shared repository may have", full, r.maxFile)
	}
	sum := sha256.Sum256(body)
	_, err = tx.Exec(ctx, `INSERT INTO repo_files (path, body, etag, modified) VALUES ($1, $2, $3, clock_timestamp())
ON CONFLICT (path) DO UPDATE SET body = excluded.body, etag = excluded.etag, modified = excluded.modified`,
		p, body, hex.EncodeToString(sum[:]))
	if err != nil {
		return fmt.Errorf("store %s: %w", p, err)
	}
	return nil
}

// readAllInto is io.ReadAll into b's capacity.
func readAllInto(b []byte, rd io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// Watch returns a channel that receives repo_version when Watch starts
// and then whenever it changes: at once on Push's notification (LISTEN on
// its channel, on a connection of its own), and otherwise within poll
// (zero: DefaultRepoPoll), since notifications are lost while the
// connection is down. After a lost connection (a database restart) it
// connects again, backing off up to watchRetryMax, and reads the version.
// The channel holds the latest version only: a slow reader misses
// intermediate ones, never the last. It is closed when ctx ends or the
// Repo is closed.
func (r *Repo) Watch(ctx context.Context, poll time.Duration) <-chan int64 {
	if poll <= 0 {
		poll = DefaultRepoPoll
	}
	out := make(chan int64, 1)
	go r.watch(ctx, poll, out)
	return out
}

func (r *Repo) watch(ctx context.Context, poll time.Duration, out chan int64) {
	defer close(out)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-r.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	last := int64(-1)
	backoff := watchRetryMin
	for ctx.Err() == nil {
		if r.watchConn(ctx, poll, out, &last) {
			backoff = watchRetryMin // it was connected: a new failure starts short again
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, watchRetryMax)
	}
}

// watchConn watches on one connection until it fails or ctx ends; it
// reports whether it got as far as listening.
func (r *Repo) watchConn(ctx context.Context, poll time.Duration, out chan int64, last *int64) bool {
	conn, err := r.dial(ctx)
	if err != nil {
		return false
	}
	defer closeConn(conn)
	if _, err := conn.Exec(ctx, "LISTEN "+repoChannel); err != nil {
		return false
	}
	for {
		// After LISTEN: a Push that commits from here on is notified.
		var v int64
		if err := readRepoVersion(ctx, conn, &v); err != nil {
			return false // back off longer: it may be no passing failure
		}
		if v != *last {
			*last = v
			deliver(out, v)
		}
		wctx, cancel := context.WithTimeout(ctx, poll)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return true
		case err == nil, errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			// A notification, or the poll.
		default:
			return true
		}
	}
}

// deliver puts v in out, replacing a version not yet received. Only the
// watcher sends on out, so after the drain there is room.
func deliver(out chan int64, v int64) {
	select {
	case out <- v:
		return
	default:
	}
	select {
	case <-out:
	default:
	}
	out <- v
}

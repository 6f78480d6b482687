package fleetpg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/pgtest"
	"github.com/ringfence/ringfence/tufrepo"
)

// repoDB opens a Repo on a new database of the test cluster.
func repoDB(t *testing.T) (*pgtest.Cluster, string, *Repo) {
	t.Helper()
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	r, err := OpenRepo(ctxFor(t), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return c, dsn, r
}

// repoSQL is a connection of the test's own, to look at the tables.
func repoSQL(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctxFor(t), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// newRepoDir makes a TUF repository (tufrepo.Init) with a few targets
// written by hand, one in a nested directory, and a lock file outside
// metadata/ and targets/.
func newRepoDir(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "repo")
	_, err := tufrepo.Init(dir, filepath.Join(base, "keys"), tufrepo.InitOptions{})
	require.NoError(t, err)
	writeRepoFile(t, dir, "targets/bin/agent", "agent v1")
	writeRepoFile(t, dir, "targets/channels/1/"+strings.Repeat("a", 64)+".1.rfch", "channel one")
	writeRepoFile(t, dir, "targets/empty", "")
	writeRepoFile(t, dir, tufrepo.LockName, "")
	return dir
}

func writeRepoFile(t *testing.T, dir, p, body string) {
	t.Helper()
	full := filepath.Join(dir, filepath.FromSlash(p))
	require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
	require.NoError(t, os.WriteFile(full, []byte(body), 0o644))
}

// repoTree is the regular files under dir's metadata/ and targets/.
func repoTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, top := range []string{"metadata", "targets"} {
		err := filepath.WalkDir(filepath.Join(dir, top), func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && p == filepath.Join(dir, top) {
				return nil
			}
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			b, err := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			out[filepath.ToSlash(rel)] = string(b)
			return err
		})
		require.NoError(t, err)
	}
	return out
}

// storedFiles is repo_files: path -> etag, and checks every etag against
// its body.
func storedFiles(t *testing.T, conn *pgx.Conn) map[string]string {
	t.Helper()
	rows, err := conn.Query(ctxFor(t), "SELECT path, etag, body FROM repo_files")
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var p, e string
		var b []byte
		require.NoError(t, rows.Scan(&p, &e, &b))
		sum := sha256.Sum256(b)
		require.Equal(t, hex.EncodeToString(sum[:]), e, p)
		out[p] = e
	}
	require.NoError(t, rows.Err())
	return out
}

// staticETag is the ETag server/static.go sends for content: its rule,
// restated (the package is server's, unexported).
func staticETag(b []byte) string {
	h := sha256.Sum256(b)
	return `"` + hex.EncodeToString(h[:16]) + `"`
}

func repoVersion(t *testing.T, r *Repo) int64 {
	t.Helper()
	v, err := r.Version(ctxFor(t))
	require.NoError(t, err)
	return v
}

// TestPGRepoPushPull: Push seeds an empty database; Pull reproduces it
// byte for byte in another directory, writing only what differs (targets,
// then metadata, timestamp.json last, then removals); a change and a
// deletion travel the same way; a Push of nothing new stores nothing; a
// Push from a stale version is refused and stores nothing.
func TestPGRepoPushPull(t *testing.T) {
	_, dsn, r := repoDB(t)
	ctx := ctxFor(t)
	db := repoSQL(t, dsn)
	a := newRepoDir(t)
	b := t.TempDir()

	require.Equal(t, int64(0), repoVersion(t, r))
	writeRepoFile(t, b, "targets/local-only", "x")
	st, err := r.Pull(ctx, b)
	require.NoError(t, err)
	require.Equal(t, PullStats{}, st, "an empty database at version 0 changes nothing")
	require.Equal(t, map[string]string{"targets/local-only": "x"}, repoTree(t, b))
	require.NoError(t, os.Remove(filepath.Join(b, "targets", "local-only")))

	v, err := r.Push(ctx, a, 0, nil)
	require.NoError(t, err)
	require.Equal(t, int64(1), v)
	require.Equal(t, int64(1), repoVersion(t, r))
	want := repoTree(t, a)
	stored := storedFiles(t, db)
	require.Len(t, stored, len(want))
	require.NotContains(t, stored, tufrepo.LockName)

	st, err = r.Pull(ctx, b)
	require.NoError(t, err)
	require.Equal(t, PullStats{Version: 1, Written: len(want)}, st)
	require.Equal(t, want, repoTree(t, b), "byte for byte")
	for p, body := range repoTree(t, b) {
		// The static server's strong ETag is the first half of etag.
		require.Equal(t, `"`+stored[p][:32]+`"`, staticETag([]byte(body)), p)
	}
	_, err = os.Stat(filepath.Join(b, tufrepo.LockName))
	require.ErrorIs(t, err, fs.ErrNotExist, "nothing outside metadata/ and targets/ travels")

	st, err = r.Pull(ctx, b)
	require.NoError(t, err)
	require.Equal(t, PullStats{Version: 1}, st, "nothing differs: nothing written")

	// A change, a new file, a deletion, a new timestamp.
	writeRepoFile(t, a, "targets/bin/agent", "agent v2")
	writeRepoFile(t, a, "targets/bin/new", "new")
	require.NoError(t, os.Remove(filepath.Join(a, "targets", "channels", "1", strings.Repeat("a", 64)+".1.rfch")))
	writeRepoFile(t, a, "metadata/timestamp.json", `{"signed":"not really"}`)
	v, err = r.Push(ctx, a, 1, nil)
	require.NoError(t, err)
	require.Equal(t, int64(2), v)
	require.Len(t, storedFiles(t, db), len(want))

	writeRepoFile(t, b, "targets/stray", "a file the database lacks")
	writeRepoFile(t, b, "notes.txt", "outside metadata/ and targets/: left alone")
	var order []string
	r.trace = func(op, p string) { order = append(order, op+" "+p) }
	st, err = r.Pull(ctx, b)
	r.trace = nil
	require.NoError(t, err)
	require.Equal(t, PullStats{Version: 2, Written: 3, Removed: 2}, st)
	require.Equal(t, []string{
		"write targets/bin/agent", "write targets/bin/new", // targets first
		"write metadata/timestamp.json", // the timestamp after them
		"remove targets/channels/1/" + strings.Repeat("a", 64) + ".1.rfch", "remove targets/stray",
	}, order)
	require.Equal(t, repoTree(t, a), repoTree(t, b))
	notes, err := os.ReadFile(filepath.Join(b, "notes.txt"))
	require.NoError(t, err)
	require.Contains(t, string(notes), "left alone")

	// Nothing new: nothing stored, the version stays.
	v, err = r.Push(ctx, a, 2, nil)
	require.NoError(t, err)
	require.Equal(t, int64(2), v)
	require.Equal(t, int64(2), repoVersion(t, r))

	// A stale base: refused, nothing stored, even with a change.
	before := storedFiles(t, db)
	writeRepoFile(t, a, "targets/bin/agent", "agent v3")
	_, err = r.Push(ctx, a, 1, nil)
	require.ErrorIs(t, err, ErrRepoMoved)
	require.Contains(t, err.Error(), "at 2")
	require.Equal(t, int64(2), repoVersion(t, r))
	require.Equal(t, before, storedFiles(t, db))
}

// TestPGRepoTimestampLast: metadata other than timestamp.json is written
// before it even when both change (a re-signing), and after the targets.
func TestPGRepoTimestampLast(t *testing.T) {
	_, _, r := repoDB(t)
	ctx := ctxFor(t)
	a := newRepoDir(t)
	writeRepoFile(t, a, "metadata/zz.json", "sorts after timestamp.json")
	_, err := r.Push(ctx, a, 0, nil)
	require.NoError(t, err)
	var order []string
	r.trace = func(op, p string) { order = append(order, p) }
	_, err = r.Pull(ctx, t.TempDir())
	require.NoError(t, err)
	require.Equal(t, "metadata/timestamp.json", order[len(order)-1])
	seenMeta := false
	for _, p := range order[:len(order)-1] {
		if strings.HasPrefix(p, "metadata/") {
			seenMeta = true
		} else {
			require.False(t, seenMeta, "target %s after metadata", p)
		}
	}
	require.Contains(t, order, "metadata/zz.json")
}

// TestPGRepoPushFenced: a Push under a lease that is not the holder's
// live one stores nothing, whether the early check or the fence in the
// transaction finds it lost.
func TestPGRepoPushFenced(t *testing.T) {
	_, dsn, r := repoDB(t)
	ctx := ctxFor(t)
	db := repoSQL(t, dsn)
	leader, err := Open(ctx, dsn, Options{Replica: true, Timeout: 5 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = leader.Close() })
	lease, err := leader.Acquire(ctx, "replica-a", time.Minute)
	require.NoError(t, err)

	a := newRepoDir(t)
	v, err := r.Push(ctx, a, 0, &lease)
	require.NoError(t, err, "the live lease's holder pushes")
	require.Equal(t, int64(1), v)
	before := storedFiles(t, db)

	// Taken over between the early check and the fence: the fence
	// (leaseFenceSQL, NOT NULL 23502 on leader_lease) refuses.
	writeRepoFile(t, a, "targets/bin/agent", "agent v2")
	r.trace = func(op, _ string) {
		if op == "fence" {
			_, err := db.Exec(ctx, "UPDATE leader_lease SET holder = 'replica-b', epoch = epoch + 1")
			require.NoError(t, err)
		}
	}
	_, err = r.Push(ctx, a, 1, &lease)
	r.trace = nil
	require.ErrorIs(t, err, ErrLeaseLost)
	require.Equal(t, int64(1), repoVersion(t, r))
	require.Equal(t, before, storedFiles(t, db))

	// Lost already: the early check refuses.
	_, err = r.Push(ctx, a, 1, &lease)
	require.ErrorIs(t, err, ErrLeaseLost)
	require.Equal(t, int64(1), repoVersion(t, r))
	require.Equal(t, before, storedFiles(t, db))

	// Without a lease row at all.
	_, err = db.Exec(ctx, "DELETE FROM leader_lease")
	require.NoError(t, err)
	_, err = r.Push(ctx, a, 1, &lease)
	require.ErrorIs(t, err, ErrLeaseLost)
	require.Equal(t, before, storedFiles(t, db))
}

// TestPGRepoWatch: Watch delivers the version it starts at, a Push's at
// once (by notification: the poll is far longer than the test's bound),
// and after the database restarted (the connection lost) the next
// Push's; its channel closes when ctx ends.
func TestPGRepoWatch(t *testing.T) {
	c, _, r := repoDB(t)
	ctx := ctxFor(t)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := r.Watch(wctx, time.Hour)
	next := func(want int64) {
		t.Helper()
		for {
			select {
			case v, ok := <-w:
				require.True(t, ok, "the channel closed")
				if v == want {
					return
				}
				require.Less(t, v, want)
			case <-ctx.Done():
				t.Fatalf("no version %d from Watch", want)
			}
		}
	}
	next(0)
	a := newRepoDir(t)
	_, err := r.Push(ctx, a, 0, nil)
	require.NoError(t, err)
	next(1)

	c.RestartImmediate(t)
	writeRepoFile(t, a, "targets/bin/agent", "agent v2")
	v, err := r.Push(ctx, a, 1, nil) // its pooled connection broke: Push runs again on a new one
	require.NoError(t, err)
	require.Equal(t, int64(2), v)
	next(2)

	cancel()
	for range w { // until it closes
	}
}

// TestPGRepoNoEscape: symbolic links in the directory are never followed
// out of it, by Push (which ignores them) or Pull (which replaces a link
// where a file goes, and refuses one where a directory goes); names the
// table refuses, or that are not plain local names, are refused.
func TestPGRepoNoEscape(t *testing.T) {
	_, dsn, r := repoDB(t)
	ctx := ctxFor(t)
	db := repoSQL(t, dsn)
	outside := t.TempDir()
	writeRepoFile(t, outside, "secret", "secret")
	writeRepoFile(t, outside, "victim", "victim")

	a := newRepoDir(t)
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(a, "targets", "abs-link")))
	require.NoError(t, os.Symlink("../../../"+filepath.Base(outside)+"/secret", filepath.Join(a, "metadata", "rel-link.json")))
	require.NoError(t, os.Symlink(outside, filepath.Join(a, "targets", "dir-link")))
	_, err := r.Push(ctx, a, 0, nil)
	require.NoError(t, err)
	for p := range storedFiles(t, db) {
		require.NotContains(t, p, "link", "a symbolic link is not content")
	}

	// Pull replaces a link where a file goes, never writing through it.
	b := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(b, "targets", "bin"), 0o755))
	require.NoError(t, os.Symlink(filepath.Join(outside, "victim"), filepath.Join(b, "targets", "bin", "agent")))
	_, err = r.Pull(ctx, b)
	require.NoError(t, err)
	require.Equal(t, repoTree(t, a), repoTree(t, b))
	fi, err := os.Lstat(filepath.Join(b, "targets", "bin", "agent"))
	require.NoError(t, err)
	require.True(t, fi.Mode().IsRegular())
	got, err := os.ReadFile(filepath.Join(outside, "victim"))
	require.NoError(t, err)
	require.Equal(t, "victim", string(got))

	// A link where a directory goes: refused, nothing written through it.
	require.NoError(t, os.Symlink(outside, filepath.Join(b, "targets", "sub")))
	_, err = db.Exec(ctx, "INSERT INTO repo_files (path, body, etag) VALUES ('targets/sub/f', 'x', $1)", hex.EncodeToString(sha(t, "x")))
	require.NoError(t, err)
	_, err = r.Pull(ctx, b)
	require.ErrorContains(t, err, "symbolic link")
	_, err = os.Stat(filepath.Join(outside, "f"))
	require.ErrorIs(t, err, fs.ErrNotExist)

	// A path the CHECK lets through but that is no plain name: refused
	// before anything is written.
	_, err = db.Exec(ctx, "DELETE FROM repo_files WHERE path = 'targets/sub/f'")
	require.NoError(t, err)
	_, err = db.Exec(ctx, `INSERT INTO repo_files (path, body, etag) VALUES ('targets/a\b', 'x', $1)`, hex.EncodeToString(sha(t, "x")))
	require.NoError(t, err)
	c := t.TempDir()
	_, err = r.Pull(ctx, c)
	require.ErrorContains(t, err, "backslash")
	require.Empty(t, repoTree(t, c))
	_, err = db.Exec(ctx, `DELETE FROM repo_files WHERE path = 'targets/a\b'`)
	require.NoError(t, err)

	// Push refuses such a name in the directory, naming it.
	writeRepoFile(t, a, `targets/a\b`, "x")
	_, err = r.Push(ctx, a, 1, nil)
	require.ErrorContains(t, err, `a\\b`)
	require.Equal(t, int64(1), repoVersion(t, r))
	require.NoError(t, os.Remove(filepath.Join(a, `targets`, `a\b`)))

	for _, p := range []string{
		"targets/../x", "metadata/a/../../x", "/etc/passwd", "targets//x", "targets/./x", "targets/",
		"metadata", "other/x", `targets\..\x`, "targets/x\x00", "targets/\xff", "targets/" + strings.Repeat("x", maxRepoPath),
	} {
		require.Error(t, checkRepoPath(p), "%q", p)
	}
	for _, p := range []string{"targets/x", "metadata/1.root.json", "targets/channels/1/" + strings.Repeat("a", 64) + ".1.rfch", "targets/.hidden"} {
		require.NoError(t, checkRepoPath(p), "%q", p)
	}

	// metadata/ itself a link: refused, not taken for an empty directory.
	d := t.TempDir()
	require.NoError(t, os.Symlink(filepath.Join(a, "metadata"), filepath.Join(d, "metadata")))
	require.NoError(t, os.Mkdir(filepath.Join(d, "targets"), 0o755))
	_, err = r.Push(ctx, d, 1, nil)
	require.ErrorContains(t, err, "symbolic link")
	require.Equal(t, int64(1), repoVersion(t, r))
}

func sha(t *testing.T, s string) []byte {
	t.Helper()
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// TestPGRepoBounds: a file above the bound is refused, naming it, and so
// is a directory that is not a whole repository; Pull refuses a database
// file above the bound.
func TestPGRepoBounds(t *testing.T) {
	_, _, r := repoDB(t)
	ctx := ctxFor(t)
	a := newRepoDir(t)
	r.maxFile = 16 << 10 // more than any metadata file's
	writeRepoFile(t, a, "targets/big", strings.Repeat("x", 16<<10+1))
	_, err := r.Push(ctx, a, 0, nil)
	require.ErrorContains(t, err, filepath.Join(a, "targets", "big"))
	require.ErrorContains(t, err, "more than the 16384")
	require.Equal(t, int64(0), repoVersion(t, r))

	r.maxFile = 32 << 10
	_, err = r.Push(ctx, a, 0, nil)
	require.NoError(t, err)
	r.maxFile = 16 << 10
	_, err = r.Pull(ctx, t.TempDir())
	require.ErrorContains(t, err, "targets/big")
	r.maxFile = MaxRepoFile

	r.maxFiles = 3
	_, err = r.Push(ctx, a, 1, nil)
	require.ErrorContains(t, err, "more than 3 files")
	r.maxFiles = MaxRepoFiles

	require.NoError(t, os.Remove(filepath.Join(a, "metadata", "timestamp.json")))
	_, err = r.Push(ctx, a, 1, nil)
	require.ErrorContains(t, err, "timestamp.json")
	require.Equal(t, int64(1), repoVersion(t, r))
}

// TestPGRepoLargeFile: a body larger than the chunk Pull reads at once
// travels in slices, byte for byte.
func TestPGRepoLargeFile(t *testing.T) {
	_, _, r := repoDB(t)
	ctx := ctxFor(t)
	a := newRepoDir(t)
	r.chunk = 64 << 10
	big := make([]byte, r.chunk*2+12345)
	for i := range big {
		big[i] = byte(i * 7 % 251)
	}
	writeRepoFile(t, a, "targets/big.bin", string(big))
	_, err := r.Push(ctx, a, 0, nil)
	require.NoError(t, err)
	b := t.TempDir()
	_, err = r.Pull(ctx, b)
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(b, "targets", "big.bin"))
	require.NoError(t, err)
	require.Equal(t, sha256.Sum256(big), sha256.Sum256(got))
}

package fleetdb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/testtmp"
)

var testNow = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// populatedHosts is how many hosts populated stores: enough for the hosts
// bucket to be a branch over several leaves.
const populatedHosts = 300

// populated returns the bytes of a closed server.db holding
// populatedHosts hosts and a rollout with a deny list.
func populated(t *testing.T) []byte {
	t.Helper()
	dir := testtmp.Dir(t)
	db, err := Open(dir, Options{Timeout: time.Second})
	require.NoError(t, err)
	for i := range populatedHosts {
		h := &controller.Host{ID: fmt.Sprintf("host-%04d", i), Tags: []string{"lab", strings.Repeat("x", 64)},
			LastSeen: testNow, Versions: map[uint32]uint32{291: 1001}}
		require.NoError(t, db.Commit(controller.Changes{Hosts: []*controller.Host{h}}, admission.Changes{}))
	}
	r := &controller.Rollout{Spec: controller.Spec{Channel: 291, To: 1002, From: 1001}, Deny: []uint32{999}}
	require.NoError(t, db.Commit(controller.Changes{Rollouts: []*controller.Rollout{r}}, admission.Changes{}))
	require.NoError(t, db.Close())
	raw, err := os.ReadFile(filepath.Join(dir, FileName))
	require.NoError(t, err)
	return raw
}

// layout is where things are in populated's file, as bbolt itself says.
type layout struct {
	pageSize     int
	size         int // pages in use: the high-water mark times the page size
	freelist     int // page id
	branch, leaf int // the hosts bucket's root (a branch) and its first leaf
	olderMeta    int // the meta page (0 or 1) of the earlier transaction
}

func layoutOf(t *testing.T, raw []byte) layout {
	t.Helper()
	path := filepath.Join(testtmp.Dir(t), FileName)
	require.NoError(t, os.WriteFile(path, raw, 0o600))
	b, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	require.NoError(t, err)
	defer b.Close()
	var l layout
	l.pageSize = b.Info().PageSize
	require.NoError(t, b.View(func(tx *bolt.Tx) error {
		l.size = int(tx.Size())
		l.olderMeta = int(tx.ID()+1) % 2 // transaction n writes meta page n%2
		for id := 2; id < l.size/l.pageSize; id++ {
			p, err := tx.Page(id)
			if err != nil {
				return err
			}
			if p != nil && p.Type == "freelist" {
				l.freelist = id
			}
		}
		l.branch = int(tx.Bucket(bucketHosts).Root())
		p, err := tx.Page(l.branch)
		if err != nil || p.Type != "branch" {
			return fmt.Errorf("the hosts bucket's root is %+v (%v), want a branch page: store more hosts", p, err)
		}
		return nil
	}))
	require.NotZero(t, l.freelist)
	// The first element of a branch page: pos u32, ksize u32, pgid u64.
	l.leaf = int(binary.NativeEndian.Uint64(raw[l.branch*l.pageSize+16+8:]))
	return l
}

func garbage(raw []byte, from, to int) []byte {
	out := bytes.Clone(raw)
	r := rand.New(rand.NewPCG(1, 2))
	for i := from; i < to; i++ {
		out[i] = byte(r.Uint32())
	}
	return out
}

func garbagePage(raw []byte, l layout, id int) []byte {
	return garbage(raw, id*l.pageSize, (id+1)*l.pageSize)
}

func TestDamagedDatabase(t *testing.T) {
	raw := populated(t)
	l := layoutOf(t, raw)
	require.Greater(t, len(raw)/2, l.pageSize*4, "the file is long enough to be cut in half")
	ne := binary.NativeEndian
	tests := []struct {
		name   string
		damage func() []byte
		ok     bool   // not damaged: opens with everything in it
		want   string // in the error
	}{
		{name: "zero length", damage: func() []byte { return nil }, want: "empty"},
		{name: "truncated to 1 byte", damage: func() []byte { return raw[:1] }, want: "neither meta page"},
		{name: "truncated to half a page", damage: func() []byte { return raw[:l.pageSize/2] }, want: "truncated"},
		{name: "truncated to 1.5 pages", damage: func() []byte { return raw[:l.pageSize*3/2] }, want: "truncated"},
		{name: "truncated to half the file", damage: func() []byte { return raw[:l.size/2] }, want: "truncated"},
		{name: "truncated one page short", damage: func() []byte { return raw[:l.size-l.pageSize] }, want: "truncated"},
		{name: "garbage over pages 2..", damage: func() []byte { return garbage(raw, 2*l.pageSize, len(raw)) }, want: "freelist"},
		{name: "garbage over both meta pages", damage: func() []byte { return garbage(raw, 0, 2*l.pageSize) }, want: "neither meta page"},
		{name: "garbage over the freelist", damage: func() []byte { return garbagePage(raw, l, l.freelist) }, want: "freelist"},
		{name: "garbage over a leaf of the hosts", damage: func() []byte { return garbagePage(raw, l, l.leaf) }, want: fmt.Sprintf("page %d", l.leaf)},
		{name: "garbage over the hosts' branch", damage: func() []byte { return garbagePage(raw, l, l.branch) }, want: fmt.Sprintf("page %d", l.branch)},
		{name: "a leaf key pointing past its page", want: "outside the page", damage: func() []byte {
			out := bytes.Clone(raw)
			ne.PutUint32(out[l.leaf*l.pageSize+16+4:], 1<<30) // element 0's pos
			return out
		}},
		{name: "a branch pointing at itself", want: "referenced twice", damage: func() []byte {
			out := bytes.Clone(raw)
			ne.PutUint64(out[l.branch*l.pageSize+16+8:], uint64(l.branch)) // element 0's page
			return out
		}},
		{name: "a branch pointing past the file", want: "outside pages", damage: func() []byte {
			out := bytes.Clone(raw)
			ne.PutUint64(out[l.branch*l.pageSize+16+8:], 1<<40)
			return out
		}},
		{name: "bytes past the last page cut off", ok: true, damage: func() []byte { return raw[:l.size] }},
		// bbolt's check refuses a meta page that is not one (its Tx.page
		// asserts the page's id), even the older one it would not use.
		{name: "garbage over the older meta page", damage: func() []byte { return garbagePage(raw, l, l.olderMeta) }, want: "Page expected to be"},
		// A meta page that fails only its checksum is what a commit cut
		// short leaves: bbolt uses the other one, by design.
		{name: "the older meta's checksum wrong", ok: true, damage: func() []byte {
			out := bytes.Clone(raw)
			out[l.olderMeta*l.pageSize+16+56] ^= 1
			return out
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := testtmp.Dir(t)
			path := filepath.Join(dir, FileName)
			before := tt.damage()
			require.NoError(t, os.WriteFile(path, before, 0o600))

			db, err := Open(dir, Options{Timeout: time.Second})
			if tt.ok {
				require.NoError(t, err)
				st, err := db.Load()
				hosts, rollouts := st.Hosts, st.Rollouts
				require.NoError(t, err)
				require.Len(t, hosts, populatedHosts)
				require.Len(t, rollouts, 1)
				require.Equal(t, []uint32{999}, rollouts[0].Deny)
				require.NoError(t, db.Close())
				return
			}
			require.ErrorIs(t, err, ErrDamaged)
			require.Nil(t, db)
			for _, s := range []string{path, tt.want, "ringfence-server state backup", "ringfence-server serve --start-empty"} {
				require.Contains(t, err.Error(), s)
			}
			after, rerr := os.ReadFile(path)
			require.NoError(t, rerr)
			require.True(t, bytes.Equal(before, after), "a damaged file is left as it was")

			_, err = Open(dir, Options{Timeout: time.Second, ReadOnly: true})
			require.ErrorIs(t, err, ErrDamaged)
			require.ErrorIs(t, CheckFile(path), ErrDamaged)

			db, err = Open(dir, Options{Timeout: time.Second, StartEmpty: true, Clock: clock.NewFake(testNow)})
			require.NoError(t, err)
			aside := path + ".damaged-20261201T100000Z"
			require.Equal(t, aside, db.Recovered())
			moved, err := os.ReadFile(aside)
			require.NoError(t, err)
			require.True(t, bytes.Equal(before, moved), "the damaged file is kept beside the new one")
			st, err := db.Load()
			hosts, rollouts := st.Hosts, st.Rollouts
			require.NoError(t, err)
			require.Empty(t, hosts)
			require.Empty(t, rollouts)
			require.NoError(t, db.Close())

			db, err = Open(dir, Options{Timeout: time.Second})
			require.NoError(t, err, "the new database opens")
			require.Empty(t, db.Recovered())
			require.NoError(t, db.Close())
		})
	}
}

// TestStartEmptyKeepsEveryDamagedFile: a second recovery in the same second
// does not overwrite the first damaged file.
func TestStartEmptyKeepsEveryDamagedFile(t *testing.T) {
	dir := testtmp.Dir(t)
	path := filepath.Join(dir, FileName)
	clk := clock.NewFake(testNow)
	var asides []string
	for i := range 3 {
		require.NoError(t, os.WriteFile(path, []byte{byte(i)}, 0o600))
		db, err := Open(dir, Options{Timeout: time.Second, StartEmpty: true, Clock: clk})
		require.NoError(t, err)
		asides = append(asides, db.Recovered())
		require.NoError(t, db.Close())
	}
	require.Equal(t, []string{path + ".damaged-20261201T100000Z", path + ".damaged-20261201T100000Z-1", path + ".damaged-20261201T100000Z-2"}, asides)
	for i, a := range asides {
		b, err := os.ReadFile(a)
		require.NoError(t, err)
		require.Equal(t, []byte{byte(i)}, b)
	}
}

func TestOpenOptions(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) // nil: no state at all
		opts    Options
		wantErr error  // nil: opens
		wantMsg string // in the error
	}{
		{name: "read-only needs the file", opts: Options{ReadOnly: true}, wantErr: fs.ErrNotExist, wantMsg: "no state to open read-only"},
		{name: "read-only cannot start empty", opts: Options{ReadOnly: true, StartEmpty: true}, wantMsg: "StartEmpty needs a writable open"},
		{name: "a new state directory", opts: Options{StartEmpty: true}},
		{name: "read-only of a good one", setup: func(t *testing.T, dir string) {
			db, err := Open(dir, Options{})
			require.NoError(t, err)
			require.NoError(t, db.Close())
		}, opts: Options{ReadOnly: true}},
		{name: "not a regular file", setup: func(t *testing.T, dir string) {
			require.NoError(t, os.Mkdir(filepath.Join(dir, FileName), 0o700))
		}, opts: Options{StartEmpty: true}, wantMsg: "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := testtmp.Dir(t)
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			tt.opts.Timeout = time.Second
			db, err := Open(dir, tt.opts)
			if tt.wantErr == nil && tt.wantMsg == "" {
				require.NoError(t, err)
				require.Empty(t, db.Recovered())
				require.NoError(t, db.Close())
				return
			}
			require.Error(t, err)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			}
			require.Contains(t, err.Error(), tt.wantMsg)
			require.False(t, errors.Is(err, ErrDamaged))
		})
	}
}

// TestReadOnlyWhileOpen: a running server's database is locked against
// read-only opens too (a backup then goes through the server's API).
func TestReadOnlyWhileOpen(t *testing.T) {
	dir := testtmp.Dir(t)
	db, err := Open(dir, Options{Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	_, err = Open(dir, Options{Timeout: 50 * time.Millisecond, ReadOnly: true})
	require.ErrorIs(t, err, ErrLocked)
	require.ErrorIs(t, CheckFile(filepath.Join(dir, FileName)), ErrLocked)
}

// TestGuard: a panic, or a fault on the mmap (the file truncated under an
// open database), inside guard is ErrDamaged, not a crash.
func TestGuard(t *testing.T) {
	tests := []struct {
		name string
		fn   func(t *testing.T, db *DB) func() error
		want string
	}{
		{name: "panic", want: "boom", fn: func(*testing.T, *DB) func() error {
			return func() error { panic("boom") }
		}},
		{name: "fault past the end of the file", want: "fault", fn: func(t *testing.T, db *DB) func() error {
			if err := os.Truncate(db.path, 2*int64(os.Getpagesize())); err != nil {
				t.Skipf("cannot truncate a mapped file here: %v", err)
			}
			return func() error {
				return db.db.View(func(tx *bolt.Tx) error {
					return tx.Bucket(bucketHosts).ForEach(func(k, v []byte) error { return nil })
				})
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := testtmp.Dir(t)
			require.NoError(t, os.WriteFile(filepath.Join(dir, FileName), populated(t), 0o600))
			db, err := Open(dir, Options{Timeout: time.Second})
			require.NoError(t, err)
			defer db.Close()
			err = db.guard("load", tt.fn(t, db))
			require.ErrorIs(t, err, ErrDamaged)
			require.Contains(t, err.Error(), tt.want)
			require.Contains(t, err.Error(), "load: bbolt failed")
		})
	}
}

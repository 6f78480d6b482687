package hostdb

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/testtmp"
)

// scribbleReason marks the values that the "scribbled value" case damages.
const scribbleReason = "scribble-me"

// populate creates a state database at path with enough entries to need
// branch pages, overflow pages and a freelist, and returns its bytes.
func populate(t *testing.T, path string) []byte {
	t.Helper()
	db, err := Open(path, Options{Clock: clock.NewFake(epoch)})
	require.NoError(t, err)
	db.bolt.NoSync = true // durability is not under test here; Close writes the file out
	for i := range 300 {
		require.NoError(t, db.Record(Transition{
			Channel: 291, Version: uint32(i), Slot: "a", From: "trial", To: "good",
			Reason: strings.Repeat("health window passed ", 10),
		}))
	}
	for v := range uint32(20) {
		require.NoError(t, db.Quarantine(Quarantine{Channel: 291, Version: v, Reason: scribbleReason}))
	}
	require.NoError(t, db.SetPin(291, 3))
	require.NoError(t, db.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return data
}

// pageInfo is one page (with its overflow) of a bbolt file.
type pageInfo struct {
	id, overflow int
	typ          string // meta, freelist, branch, leaf or free
}

// pages lists the pages of the bbolt file at path.
func pages(t *testing.T, path string) (pageSize int, out []pageInfo) {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	require.NoError(t, err)
	defer bdb.Close()
	require.NoError(t, bdb.View(func(tx *bolt.Tx) error {
		for id := 0; ; {
			p, err := tx.Page(id)
			if err != nil || p == nil {
				return err
			}
			out = append(out, pageInfo{id: id, overflow: p.OverflowCount, typ: p.Type})
			id += 1 + p.OverflowCount
		}
	}))
	return bdb.Info().PageSize, out
}

// scribble overwrites page id of data, overflow included, with random bytes.
func scribble(data []byte, pageSize int, p pageInfo, rng *rand.Rand) []byte {
	out := bytes.Clone(data)
	for i := p.id * pageSize; i < (p.id+1+p.overflow)*pageSize && i < len(out); i++ {
		out[i] = byte(rng.Uint32())
	}
	return out
}

func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// corruption is one damaged state.db.
type corruption struct {
	name string
	data []byte
	// wantErr is ErrCorrupt, or nil for damage that bbolt survives by
	// design (a torn meta page, a free page).
	wantErr error
}

// corruptions returns damaged variants of a populated database: random files,
// and a valid database with each of its pages scribbled over in turn.
func corruptions(t *testing.T) []corruption {
	t.Helper()
	path := filepath.Join(testtmp.Dir(t), "state.db")
	good := populate(t, path)
	pageSize, list := pages(t, path)
	rng := rand.New(rand.NewPCG(291, 21))

	cs := []corruption{
		{name: "random 64 KiB", data: randomBytes(64<<10, 1), wantErr: ErrCorrupt},
		{name: "random 100 bytes", data: randomBytes(100, 2), wantErr: ErrCorrupt},
		{name: "zeros", data: make([]byte, 4*pageSize), wantErr: ErrCorrupt},
		{name: "truncated", data: good[:len(good)/2], wantErr: ErrCorrupt},
		{name: "both meta pages", data: scribble(scribble(good, pageSize, pageInfo{id: 0}, rng), pageSize, pageInfo{id: 1}, rng), wantErr: ErrCorrupt},
		{name: "scribbled value", data: bytes.ReplaceAll(good, []byte(scribbleReason), bytes.Repeat([]byte{'"'}, len(scribbleReason))), wantErr: ErrCorrupt},
	}
	for id := range 2 {
		// A torn write of a meta page keeps its header, which is the same in
		// the old and the new version; bbolt then uses the other meta page,
		// as designed. Damage that reaches the header is more than a torn
		// write, and bbolt's check rejects it.
		torn := bytes.Clone(good)
		copy(torn[id*pageSize+16:(id+1)*pageSize], randomBytes(pageSize-16, uint64(id)))
		cs = append(cs, corruption{name: fmt.Sprintf("torn meta page %d", id), data: torn})
	}
	kinds := map[string]int{}
	for _, p := range list {
		want := ErrCorrupt
		if p.typ == "free" {
			want = nil // free pages hold nothing
		}
		kinds[p.typ]++
		cs = append(cs, corruption{
			name:    fmt.Sprintf("scribbled %s page %d", p.typ, p.id),
			data:    scribble(good, pageSize, p, rng),
			wantErr: want,
		})
	}
	for _, typ := range []string{"meta", "freelist", "branch", "leaf", "free"} {
		require.NotZero(t, kinds[typ], "populate made no %s page: %v", typ, kinds)
	}
	return cs
}

func TestOpenCorrupt(t *testing.T) {
	for _, c := range corruptions(t) {
		t.Run(c.name, func(t *testing.T) {
			for _, readOnly := range []bool{true, false} {
				path := filepath.Join(testtmp.Dir(t), "state.db")
				require.NoError(t, os.WriteFile(path, c.data, 0o600))

				db, err := Open(path, Options{ReadOnly: readOnly, Clock: clock.NewFake(epoch)})
				if c.wantErr != nil {
					require.ErrorIs(t, err, c.wantErr, "read-only=%v", readOnly)
					assert.True(t, strings.HasPrefix(err.Error(), "hostdb: "), err.Error())
					continue
				}
				require.NoError(t, err, "read-only=%v", readOnly)
				_, err = db.History(0)
				assert.NoError(t, err)
				require.NoError(t, db.Close())
			}
		})
	}
}

func TestOpenOrReset(t *testing.T) {
	for _, c := range corruptions(t) {
		t.Run(c.name, func(t *testing.T) {
			dir := testtmp.Dir(t)
			path := filepath.Join(dir, "state.db")
			require.NoError(t, os.WriteFile(path, c.data, 0o600))
			clk := clock.NewFake(epoch)

			db, reset, err := OpenOrReset(path, Options{Clock: clk})
			require.NoError(t, err)
			defer db.Close()
			assert.Equal(t, c.wantErr != nil, reset)

			// Either way the database works.
			require.NoError(t, db.Record(Transition{Channel: 1, Version: 1}))
			require.NoError(t, db.Quarantine(Quarantine{Channel: 1, Version: 1}))

			aside := path + ".corrupt-" + strconv.FormatInt(epoch.Unix(), 10)
			moved, err := os.ReadFile(aside)
			if !reset {
				assert.ErrorIs(t, err, fs.ErrNotExist)
				return
			}
			require.NoError(t, err, "the corrupt file is kept for diagnosis")
			assert.True(t, bytes.Equal(c.data, moved), "the corrupt file is moved aside unchanged")
			h, err := db.History(0)
			require.NoError(t, err)
			assert.Len(t, h, 1, "the fresh database starts empty")
		})
	}
}

func TestOpenOrResetHealthy(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, path string)
	}{
		{name: "missing file", setup: func(*testing.T, string) {}},
		{name: "empty file", setup: func(t *testing.T, path string) {
			require.NoError(t, os.WriteFile(path, nil, 0o600)) // a crash while creating it
		}},
		{name: "populated", setup: func(t *testing.T, path string) { populate(t, path) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := testtmp.Dir(t)
			path := filepath.Join(dir, "state.db")
			tt.setup(t, path)
			var before []Transition
			if _, err := os.Stat(path); err == nil {
				if db, err := Open(path, Options{ReadOnly: true}); err == nil {
					before, err = db.History(0)
					require.NoError(t, err)
					require.NoError(t, db.Close())
				}
			}

			db, reset, err := OpenOrReset(path, Options{Clock: clock.NewFake(epoch)})
			require.NoError(t, err)
			defer db.Close()
			assert.False(t, reset)
			after, err := db.History(0)
			require.NoError(t, err)
			assert.Equal(t, before, after)
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			assert.Len(t, entries, 1, "nothing moved aside")
		})
	}
}

func TestOpenOrResetKeepsNewestCorrupt(t *testing.T) {
	dir := testtmp.Dir(t)
	path := filepath.Join(dir, "state.db")
	clk := clock.NewFake(epoch)
	for i := range MaxCorruptKept + 2 {
		clk.Set(epoch.Add(time.Duration(i) * time.Minute))
		require.NoError(t, os.WriteFile(path, randomBytes(100, uint64(i)), 0o600))
		db, reset, err := OpenOrReset(path, Options{Clock: clk})
		require.NoError(t, err)
		require.True(t, reset)
		require.NoError(t, db.Close())
	}
	// Not ours: kept whatever their age.
	for _, name := range []string{"state.db.corrupt-old", "other.db.corrupt-1"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), nil, 0o600))
	}
	require.NoError(t, os.WriteFile(path, randomBytes(100, 99), 0o600))
	clk.Set(epoch.Add(time.Hour))
	db, reset, err := OpenOrReset(path, Options{Clock: clk})
	require.NoError(t, err)
	require.True(t, reset)
	require.NoError(t, db.Close())

	var names []string
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	unix := func(d time.Duration) string {
		return "state.db.corrupt-" + strconv.FormatInt(epoch.Add(d).Unix(), 10)
	}
	assert.ElementsMatch(t, []string{
		"state.db", "state.db.corrupt-old", "other.db.corrupt-1",
		unix(3 * time.Minute), unix(4 * time.Minute), unix(time.Hour),
	}, names)
}

func TestLocked(t *testing.T) {
	path := filepath.Join(testtmp.Dir(t), "state.db")
	holder, err := Open(path, Options{Clock: clock.NewFake(epoch)})
	require.NoError(t, err)
	require.NoError(t, holder.Record(Transition{Channel: 1}))
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	short := 50 * time.Millisecond
	tests := []struct {
		name string
		open func() error
	}{
		{name: "read-write", open: func() error {
			_, err := Open(path, Options{Timeout: short})
			return err
		}},
		{name: "read-only", open: func() error {
			_, err := Open(path, Options{Timeout: short, ReadOnly: true})
			return err
		}},
		{name: "reset", open: func() error {
			_, reset, err := OpenOrReset(path, Options{Timeout: short})
			assert.False(t, reset)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.open()
			require.ErrorIs(t, err, ErrLocked)
			assert.NotErrorIs(t, err, ErrCorrupt)
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(before, after), "a locked file is left alone")
		})
	}

	require.NoError(t, holder.Close())
	db, err := Open(path, Options{Timeout: short})
	require.NoError(t, err, "the lock goes with Close")
	require.NoError(t, db.Close())
}

func TestReadOnly(t *testing.T) {
	path := filepath.Join(testtmp.Dir(t), "state.db")
	populate(t, path)
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	db, err := Open(path, Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()

	writes := []struct {
		name  string
		write func() error
	}{
		{"Record", func() error { return db.Record(Transition{Channel: 1}) }},
		{"Quarantine", func() error { return db.Quarantine(Quarantine{Channel: 1}) }},
		{"Unquarantine", func() error { return db.Unquarantine(291, 1) }},
		{"SetPin", func() error { return db.SetPin(1, 1) }},
		{"ClearPin", func() error { return db.ClearPin(291) }},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			err := w.write()
			require.ErrorIs(t, err, ErrReadOnly)
			assert.Contains(t, err.Error(), "hostdb: database is open read-only: cannot ")
		})
	}

	h, err := db.History(5)
	require.NoError(t, err)
	assert.Len(t, h, 5, "reads work")
	q, err := db.IsQuarantined(291, 1)
	require.NoError(t, err)
	assert.True(t, q)

	require.NoError(t, db.Close())
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(before, after), "a read-only open changes nothing on disk")
}

func TestReadOnlySpecialFiles(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string)
		wantErr error
	}{
		{name: "missing", setup: func(*testing.T, string) {}, wantErr: fs.ErrNotExist},
		{name: "empty", setup: func(t *testing.T, path string) {
			require.NoError(t, os.WriteFile(path, nil, 0o600))
		}, wantErr: ErrCorrupt},
		{name: "bbolt without our buckets", setup: func(t *testing.T, path string) {
			bdb, err := bolt.Open(path, 0o600, nil)
			require.NoError(t, err)
			require.NoError(t, bdb.Close())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(testtmp.Dir(t), "state.db")
			tt.setup(t, path)
			db, err := Open(path, Options{ReadOnly: true})
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				_, statErr := os.Stat(path)
				if tt.wantErr == fs.ErrNotExist {
					assert.ErrorIs(t, statErr, fs.ErrNotExist, "read-only never creates the file")
				}
				return
			}
			require.NoError(t, err)
			defer db.Close()
			h, err := db.History(0)
			require.NoError(t, err)
			assert.Empty(t, h)
			q, err := db.Quarantined()
			require.NoError(t, err)
			assert.Empty(t, q)
			pinned, err := db.IsQuarantined(1, 1)
			require.NoError(t, err)
			assert.False(t, pinned)
			_, ok, err := db.Pin(1)
			require.NoError(t, err)
			assert.False(t, ok)
		})
	}
}

func TestNewerSchema(t *testing.T) {
	path := filepath.Join(testtmp.Dir(t), "state.db")
	populate(t, path)
	bdb, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, []byte("99"))
	}))
	require.NoError(t, bdb.Close())

	for _, readOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("read-only=%v", readOnly), func(t *testing.T) {
			_, reset, err := OpenOrReset(path, Options{ReadOnly: readOnly, Clock: clock.NewFake(epoch)})
			require.ErrorIs(t, err, ErrSchema)
			assert.NotErrorIs(t, err, ErrCorrupt)
			assert.False(t, reset, "a newer database is not reset")
			_, err = os.Stat(path)
			assert.NoError(t, err)
		})
	}
}

func TestUnknownBucketIsKept(t *testing.T) {
	// A newer ringfence with the same schema version may add a bucket
	// (say, a fleet-wide pin list); this one reads around it.
	path := filepath.Join(testtmp.Dir(t), "state.db")
	populate(t, path)
	bdb, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("future"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	}))
	require.NoError(t, bdb.Close())

	db, reset, err := OpenOrReset(path, Options{Clock: clock.NewFake(epoch)})
	require.NoError(t, err)
	defer db.Close()
	assert.False(t, reset)
	require.NoError(t, db.bolt.View(func(tx *bolt.Tx) error {
		assert.Equal(t, []byte("v"), tx.Bucket([]byte("future")).Get([]byte("k")))
		return nil
	}))
}

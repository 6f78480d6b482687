package atomicfile_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/testtmp"
)

// dirNames returns the sorted names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name     string
		existing []byte // nil: the target does not exist yet
		data     []byte
		perm     os.FileMode
	}{
		{name: "new file", data: []byte("hello"), perm: 0o644},
		{name: "new empty file", data: []byte{}, perm: 0o600},
		{name: "overwrite longer", existing: bytes.Repeat([]byte("old "), 1000), data: []byte("new"), perm: 0o644},
		{name: "overwrite shorter", existing: []byte("old"), data: bytes.Repeat([]byte("new "), 1000), perm: 0o640},
		{name: "read-only mode", data: []byte("frozen"), perm: 0o444},
		{name: "group writable", data: []byte("shared"), perm: 0o664}, // not masked by the umask
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := testtmp.Dir(t)
			path := filepath.Join(dir, "target")
			if tt.existing != nil {
				require.NoError(t, os.WriteFile(path, tt.existing, 0o600))
			}

			require.NoError(t, atomicfile.WriteFile(path, tt.data, tt.perm))

			got, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, tt.data, got)
			info, err := os.Stat(path)
			require.NoError(t, err)
			assert.Equal(t, wantMode(tt.perm), info.Mode().Perm())
			assert.Equal(t, []string{"target"}, dirNames(t, dir), "no temporary file left behind")
		})
	}
}

func TestWriteStreams(t *testing.T) {
	path := filepath.Join(testtmp.Dir(t), "target")
	err := atomicfile.Write(path, 0o644, func(w io.Writer) error {
		for i := range 3 {
			if _, err := w.Write([]byte{'a' + byte(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	require.NoError(t, err)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "abc", string(got))
}

func TestWriteFailureLeavesTargetUntouched(t *testing.T) {
	errFill := errors.New("fill failed")
	tests := []struct {
		name     string
		existing []byte // nil: the target does not exist yet
		fill     func(w io.Writer) error
		wantErr  error
	}{
		{
			name:     "fill fails after a partial write",
			existing: []byte("old content"),
			fill: func(w io.Writer) error {
				if _, err := w.Write([]byte("partial")); err != nil {
					return err
				}
				return errFill
			},
			wantErr: errFill,
		},
		{
			name:     "fill fails before writing",
			existing: []byte("old content"),
			fill:     func(io.Writer) error { return errFill },
			wantErr:  errFill,
		},
		{
			name: "fill fails with no target",
			fill: func(w io.Writer) error {
				_, _ = w.Write([]byte("partial"))
				return errFill
			},
			wantErr: errFill,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := testtmp.Dir(t)
			path := filepath.Join(dir, "target")
			want := []string{}
			if tt.existing != nil {
				require.NoError(t, os.WriteFile(path, tt.existing, 0o644))
				want = []string{"target"}
			}

			err := atomicfile.Write(path, 0o644, tt.fill)
			require.ErrorIs(t, err, tt.wantErr)

			assert.ElementsMatch(t, want, dirNames(t, dir), "target untouched, no temporary file left behind")
			if tt.existing != nil {
				got, err := os.ReadFile(path)
				require.NoError(t, err)
				assert.Equal(t, tt.existing, got)
			}
		})
	}
}

func TestWriteMissingDirectory(t *testing.T) {
	dir := testtmp.Dir(t)
	err := atomicfile.WriteFile(filepath.Join(dir, "missing", "target"), []byte("x"), 0o644)
	require.ErrorIs(t, err, os.ErrNotExist)
	assert.Empty(t, dirNames(t, dir))
}

func TestRename(t *testing.T) {
	tests := []struct {
		name     string
		otherDir bool // oldpath in a different directory from newpath
		existing bool // newpath exists before the rename
	}{
		{name: "same directory"},
		{name: "same directory over existing", existing: true},
		{name: "across directories", otherDir: true},
		{name: "across directories over existing", otherDir: true, existing: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := testtmp.Dir(t)
			oldDir := dir
			if tt.otherDir {
				oldDir = filepath.Join(dir, "downloads")
				require.NoError(t, os.Mkdir(oldDir, 0o755))
			}
			oldpath := filepath.Join(oldDir, "file.part")
			newpath := filepath.Join(dir, "file")
			require.NoError(t, os.WriteFile(oldpath, []byte("new"), 0o644))
			if tt.existing {
				require.NoError(t, os.WriteFile(newpath, []byte("old"), 0o644))
			}

			require.NoError(t, atomicfile.Rename(oldpath, newpath))

			got, err := os.ReadFile(newpath)
			require.NoError(t, err)
			assert.Equal(t, "new", string(got))
			_, err = os.Stat(oldpath)
			assert.ErrorIs(t, err, os.ErrNotExist)
		})
	}
}

func TestRenameMissingSource(t *testing.T) {
	dir := testtmp.Dir(t)
	newpath := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(newpath, []byte("old"), 0o644))

	err := atomicfile.Rename(filepath.Join(dir, "missing"), newpath)
	require.ErrorIs(t, err, os.ErrNotExist)
	got, err := os.ReadFile(newpath)
	require.NoError(t, err)
	assert.Equal(t, "old", string(got))
}

func TestSyncDir(t *testing.T) {
	dir := testtmp.Dir(t)
	require.NoError(t, atomicfile.SyncDir(dir))
}

func TestIsTemp(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{".state.db.tmp-123456", true},
		{".root.json.tmp-0", true},
		{"..hidden.tmp-42", true},
		{"state.db", false},
		{"state.db.tmp-123", false}, // no leading dot
		{".state.db.tmp-", false},   // no random suffix
		{".state.db.tmp-12x", false},
		{".tmp-123", false}, // no base name
		{".state.db", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, atomicfile.IsTemp(tt.name))
		})
	}
}

func TestCleanup(t *testing.T) {
	dir := testtmp.Dir(t)
	for _, name := range []string{
		"state.db",
		".state.db.tmp-123456", // stale temporary files
		".root.json.tmp-42",
		"state.db.tmp-1", // look-alikes that are kept
		".state.db.tmp-1x",
		".profile",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644))
	}
	// A directory with a temporary file's name is not ours: keep it.
	require.NoError(t, os.Mkdir(filepath.Join(dir, ".slot.tmp-7"), 0o755))
	// A real leftover from an interrupted Write.
	require.Error(t, atomicfile.Write(filepath.Join(dir, "manifest"), 0o644, func(io.Writer) error {
		return errors.New("interrupted")
	}))

	require.NoError(t, atomicfile.Cleanup(dir))

	assert.Equal(t, []string{".profile", ".slot.tmp-7", ".state.db.tmp-1x", "state.db", "state.db.tmp-1"}, dirNames(t, dir))
	require.NoError(t, atomicfile.Cleanup(dir), "a second run finds nothing to do")
}

func TestCleanupMissingDirectory(t *testing.T) {
	err := atomicfile.Cleanup(filepath.Join(testtmp.Dir(t), "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// BenchmarkWriteFile compares a durable replace of a 1 MiB file with a bare
// write+fsync of the same file in place; the difference is what durability
// costs: a temporary file, a rename and a directory fsync. "paired" runs both
// alternately in one loop, so that both see the same disk conditions, and
// reports the ratio of their times as atomicfile/bare.
func BenchmarkWriteFile(b *testing.B) {
	data := bytes.Repeat([]byte{0xA5}, 1<<20)
	b.Run("atomicfile", func(b *testing.B) {
		path := filepath.Join(testtmp.Dir(b), "target")
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bare", func(b *testing.B) {
		path := filepath.Join(testtmp.Dir(b), "target")
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if err := bareWriteFile(path, data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("paired", func(b *testing.B) {
		dir := testtmp.Dir(b)
		atomicPath, barePath := filepath.Join(dir, "atomic"), filepath.Join(dir, "bare")
		var atomicTime, bareTime time.Duration
		for b.Loop() {
			start := time.Now()
			if err := atomicfile.WriteFile(atomicPath, data, 0o644); err != nil {
				b.Fatal(err)
			}
			mid := time.Now()
			if err := bareWriteFile(barePath, data, 0o644); err != nil {
				b.Fatal(err)
			}
			atomicTime += mid.Sub(start)
			bareTime += time.Since(mid)
		}
		b.ReportMetric(float64(atomicTime)/float64(bareTime), "atomicfile/bare")
	})
}

// bareWriteFile is the baseline: truncate, write and fsync in place. It is not
// crash-safe: a crash in between leaves a truncated or partial file.
func bareWriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

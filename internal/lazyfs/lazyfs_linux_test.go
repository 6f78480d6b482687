package lazyfs_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/lazyfs"
)

// mount mounts a recording file system over a new backing directory, or
// skips the test where FUSE cannot be mounted.
func mount(t *testing.T) *lazyfs.FS {
	t.Helper()
	mnt, backing := t.TempDir(), t.TempDir()
	f, err := lazyfs.Mount(mnt, backing)
	if errors.Is(err, lazyfs.ErrNoFUSE) {
		t.Skipf("SKIPPED: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return f
}

// recordingOld mounts a file system holding x ("old") and starts recording.
func recordingOld(t *testing.T) (*lazyfs.FS, string) {
	t.Helper()
	f := mount(t)
	path := filepath.Join(f.Mountpoint, "x")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	return f, path
}

// states returns the content of name (or "<none>") in every state the
// recording can leave: every cut, with the volatile changes dropped, kept
// all, and kept one at a time.
func states(t *testing.T, r lazyfs.Recording, name string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	look := func(im *lazyfs.Image) {
		dir := filepath.Join(t.TempDir(), "s")
		if err := im.Materialize(dir); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		switch {
		case errors.Is(err, os.ErrNotExist):
			out["<none>"] = true
		case err != nil:
			t.Fatal(err)
		default:
			out[string(b)] = true
		}
	}
	for k := 0; k <= len(r.Ops); k++ {
		look(r.State(k, nil))
		look(r.State(k, func(int) bool { return true }))
		for _, v := range r.Volatile(k) {
			look(r.State(k, func(i int) bool { return i == v }))
		}
	}
	return out
}

func TestDurableWriteSurvivesEveryCut(t *testing.T) {
	f, path := recordingOld(t)
	if err := atomicfile.WriteFile(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := f.Stop()
	var kinds []string
	for _, o := range r.Ops {
		kinds = append(kinds, o.Kind.String())
	}
	t.Logf("ops: %v", kinds)
	if n := len(r.Ops); n < 6 {
		t.Fatalf("recorded %d ops, want create, write, chmod, fsync, rename, fsyncdir at least", n)
	}
	got := states(t, r, "x")
	if len(got) != 2 || !got["old"] || !got["new"] {
		t.Fatalf("states of x: %v; want exactly old and new", got)
	}
	if final := r.State(len(r.Ops), nil); final.Digest() != r.State(len(r.Ops), func(int) bool { return true }).Digest() {
		t.Fatal("after the directory sync a cut that drops the volatile changes differs from one that keeps them")
	}
}

// TestUnsyncedRenameCanLeaveEmptyFile is the model failing what it must:
// write, rename, no fsync of the file: a cut can leave the new name on an
// empty file.
func TestUnsyncedRenameCanLeaveEmptyFile(t *testing.T) {
	f, path := recordingOld(t)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.SyncDir(f.Mountpoint); err != nil {
		t.Fatal(err)
	}
	got := states(t, f.Stop(), "x")
	if !got[""] {
		t.Fatalf("states of x: %v; want an empty file among them", got)
	}
}

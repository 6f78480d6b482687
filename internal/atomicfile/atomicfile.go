// Package atomicfile is the one durable-write helper of Ringfence: every file
// that must survive a crash or a power cut whole (trusted TUF metadata, slot
// manifests, completed downloads, ...) is written through it, and nothing else
// in the code base calls os.Rename.
//
// Write (and WriteFile, which uses it) replaces a file in these steps:
//
//  1. Create a temporary file with a unique name in the target's directory
//     (".<base>.tmp-<random>"), so that the rename in step 5 stays within one
//     file system and is atomic.
//  2. Write the new content into it, then set its mode to perm exactly (the
//     umask does not apply).
//  3. Sync the temporary file, so its data and mode are on disk before any
//     name points at it.
//  4. Close it.
//  5. Rename it over the target. Readers see either the complete old file or
//     the complete new one, never a mix.
//  6. Sync the parent directory, so that the rename itself is on disk. Most
//     "atomic write" packages skip this step; without it a power cut can bring
//     back the old file, or on some file systems an empty one.
//
// If any step before the rename fails, the temporary file is removed and the
// target is untouched. If the process dies instead (a crash, SIGKILL, a power
// cut), a temporary file can be left behind; the target still holds the
// complete old or the complete new content. Cleanup removes such leftovers
// and is meant to run at start-up, assuming the last run crashed.
//
// Each step boundary is a failpoint (see internal/failpoint), so crash tests
// can kill the process between any two steps:
//
//	atomicfile/after-create
//	atomicfile/after-write
//	atomicfile/after-sync
//	atomicfile/after-close
//	atomicfile/after-rename
//	atomicfile/after-dirsync
//
// The last two are also hit by Rename.
//
// On Unix, the rename is rename(2) and the directory sync is fsync(2) on the
// directory. On Windows, the rename is MoveFileEx with
// MOVEFILE_REPLACE_EXISTING|MOVEFILE_WRITE_THROUGH, which returns only after
// the move is on disk; NTFS has no directory fsync, so SyncDir does nothing
// there.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ringfence/ringfence/internal/failpoint"
)

// tempInfix separates the target's base name from the random suffix in a
// temporary file's name: ".<base>.tmp-<random>".
const tempInfix = ".tmp-"

// Failpoint names, in the order a Write passes through them.
const (
	fpAfterCreate  = "atomicfile/after-create"
	fpAfterWrite   = "atomicfile/after-write"
	fpAfterSync    = "atomicfile/after-sync"
	fpAfterClose   = "atomicfile/after-close"
	fpAfterRename  = "atomicfile/after-rename"
	fpAfterDirSync = "atomicfile/after-dirsync"
)

// WriteFile durably replaces the file at path with data, created with mode
// perm exactly. It follows the steps in the package documentation.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return Write(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write durably replaces the file at path with what fill writes to w, created
// with mode perm exactly. It follows the steps in the package documentation.
// If fill returns an error, the target is untouched, the temporary file is
// removed, and Write returns fill's error wrapped.
//
// w is the temporary file itself, unbuffered; fill should buffer small writes.
// If path is a symbolic link, the link is replaced, not the file it points to.
func Write(path string, perm os.FileMode, fill func(w io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+tempInfix+"*")
	if err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	tmp := f.Name()
	closed := false
	defer func() {
		if err == nil {
			return
		}
		if !closed {
			_ = f.Close()
		}
		// After a successful rename tmp no longer exists; the error is
		// then from the directory sync and there is nothing to remove.
		_ = os.Remove(tmp)
	}()
	failpoint.Hit(fpAfterCreate)

	if err := fill(f); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	// Chmod before Sync so the mode reaches the disk together with the data.
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	failpoint.Hit(fpAfterWrite)

	if err := f.Sync(); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	failpoint.Hit(fpAfterSync)

	closed = true
	if err := f.Close(); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	failpoint.Hit(fpAfterClose)

	return Rename(tmp, path)
}

// Rename durably renames oldpath to newpath, replacing newpath if it exists,
// and then syncs the parent directory of newpath, and that of oldpath if it
// differs.
//
// Rename is for callers that fill a file themselves (a resumable download,
// a moved-aside database). The caller must Sync and Close the file at oldpath
// before calling Rename: Rename makes the new name durable, not the content
// behind it, and a rename that reaches the disk before the data can leave a
// complete-looking but empty or partial file after a power cut. Both paths
// must be on the same file system.
//
// If the rename succeeds but a directory sync fails, newpath already holds the
// new file, but the rename may not survive a power cut; the error says so.
func Rename(oldpath, newpath string) error {
	if err := rename(oldpath, newpath); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	failpoint.Hit(fpAfterRename)

	newDir := filepath.Dir(newpath)
	if err := SyncDir(newDir); err != nil {
		return fmt.Errorf("atomicfile: renamed %s to %s but the rename may not be durable: %w", oldpath, newpath, err)
	}
	if oldDir := filepath.Dir(oldpath); filepath.Clean(oldDir) != filepath.Clean(newDir) {
		if err := SyncDir(oldDir); err != nil {
			return fmt.Errorf("atomicfile: renamed %s to %s but the removal of the old name may not be durable: %w", oldpath, newpath, err)
		}
	}
	failpoint.Hit(fpAfterDirSync)
	return nil
}

// SyncDir flushes the directory dir to disk, so that file creations, renames
// and removals in it survive a power cut. On Windows it does nothing and
// returns nil (see the package documentation).
func SyncDir(dir string) error {
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("atomicfile: sync directory %s: %w", dir, err)
	}
	return nil
}

// Cleanup removes the temporary files that an interrupted Write left in dir.
// It does not descend into subdirectories. Callers run it at start-up, before
// anything writes into dir: a temporary file that belongs to a Write still in
// progress would be removed too.
//
// Cleanup does not sync dir afterwards: a removed temporary file that comes
// back after a power cut is harmless and is removed on the next start-up.
// It removes every leftover it can and returns the errors joined.
func Cleanup(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("atomicfile: clean up %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		if !e.Type().IsRegular() || !IsTemp(e.Name()) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("atomicfile: clean up %s: %w", dir, err)
	}
	return nil
}

// IsTemp reports whether name (a base name, not a path) has the form of a
// temporary file made by Write: ".<base>.tmp-<digits>". Callers that list a
// directory use it to skip such files.
func IsTemp(name string) bool {
	if !strings.HasPrefix(name, ".") {
		return false
	}
	i := strings.LastIndex(name, tempInfix)
	if i < 2 { // "." plus a base name of at least one byte
		return false
	}
	suffix := name[i+len(tempInfix):]
	if suffix == "" {
		return false
	}
	for _, r := range suffix {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

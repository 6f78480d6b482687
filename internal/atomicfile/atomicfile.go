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
// Prepare, Add and Commit write a set of files of one directory with one
// directory sync, and rename before they sync: only for files that nothing
// reads until a later durable write of the caller's says they are complete
// (see Prepared).
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
	"sync"

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
func Write(path string, perm os.FileMode, fill func(w io.Writer) error) error {
	t, err := create(path, perm, fill)
	if err == nil {
		err = t.syncClose()
	}
	if err == nil {
		err = Rename(t.name, path)
	}
	if err != nil {
		t.discard()
	}
	return err
}

// Prepared is a set of files of one directory that nothing reads until a
// later durable write says they are complete: a content slot, which the
// boot record names only after its files are written, and which the record
// marks as being written (EMPTY) before any of them changes. For such files
// the atomic replace of Write is not needed, and its order can be relaxed
// for speed: Add writes each file under a temporary name and does not sync
// it; Commit renames them all over their targets, then syncs the files
// together and the directory after them, and returns when all of it is
// durable.
//
// After a crash before Commit returned, a target can hold its old content,
// its new content, or a new content cut short (its rename reached the disk
// before its data): the caller must not let anything read the targets until
// Commit returned, and then must make them visible with a durable write of
// its own. Renaming before syncing lets one journal commit of the file
// system carry the data and the renames, so the directory's sync costs
// little more than the file's: the bare minimum of a durable new file.
type Prepared struct {
	dir string
	ts  []*temp
}

// Prepare starts a set of files to replace in dir.
func Prepare(dir string) *Prepared { return &Prepared{dir: dir} }

// Add writes the file name of the set into a temporary file of the
// directory, with mode perm exactly, starts its writeback without waiting
// for it (on Linux), and leaves it open and unsynced. The target is
// untouched. On an error every temporary file of the set is
// removed.
func (p *Prepared) Add(name string, data []byte, perm os.FileMode) error {
	t, err := create(filepath.Join(p.dir, name), perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	if err != nil {
		p.Discard()
		return err
	}
	startWriteback(t.f)
	p.ts = append(p.ts, t)
	return nil
}

// Commit renames the files added over their targets, in order, then syncs
// the files together, closes them, and syncs the directory. On Windows,
// where an open file cannot be renamed, the files are synced and closed
// first, and the rename itself is durable when it returns
// (MOVEFILE_WRITE_THROUGH). When it
// returns nil, the targets' new content and names are durable. After an
// error, Discard removes what was not renamed.
func (p *Prepared) Commit() error {
	if !renameOpenFiles {
		if err := p.syncClose(); err != nil {
			return err
		}
	}
	for _, t := range p.ts {
		if err := rename(t.name, t.target); err != nil {
			return fmt.Errorf("atomicfile: %w", err)
		}
		t.renamed = true
		failpoint.Hit(fpAfterRename)
	}
	if renameOpenFiles {
		if err := p.syncClose(); err != nil {
			return err
		}
	}
	// The directory last: on a journaling file system the files' syncs
	// have committed the renames with them, and this one finds little left.
	if err := syncDirUnlessSkipped(p.dir); err != nil {
		return fmt.Errorf("atomicfile: renamed %d files in %s but the renames may not be durable: %w", len(p.ts), p.dir, err)
	}
	failpoint.Hit(fpAfterDirSync)
	return nil
}

// syncClose syncs the files of the set together and closes them.
func (p *Prepared) syncClose() error {
	errs := make([]error, len(p.ts))
	var wg sync.WaitGroup
	for i, t := range p.ts {
		wg.Go(func() { errs[i] = t.syncClose() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Discard closes the files of the set and removes the temporary files that
// were not renamed.
func (p *Prepared) Discard() {
	for _, t := range p.ts {
		t.discard()
	}
}

// temp is a temporary file being written for target.
type temp struct {
	f               *os.File
	name, target    string
	closed, renamed bool
}

// create makes the temporary file for target and fills it (steps 1 and 2).
// The file is left open and unsynced; on an error it is removed.
func create(target string, perm os.FileMode, fill func(w io.Writer) error) (*temp, error) {
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+tempInfix+"*")
	if err != nil {
		return nil, fmt.Errorf("atomicfile: write %s: %w", target, err)
	}
	t := &temp{f: f, name: f.Name(), target: target}
	failpoint.Hit(fpAfterCreate)
	if err := fill(f); err != nil {
		t.discard()
		return nil, fmt.Errorf("atomicfile: write %s: %w", target, err)
	}
	// Chmod before Sync so the mode reaches the disk together with the data.
	if err := f.Chmod(perm); err != nil {
		t.discard()
		return nil, fmt.Errorf("atomicfile: write %s: %w", target, err)
	}
	failpoint.Hit(fpAfterWrite)
	return t, nil
}

// syncClose syncs and closes the temporary file (steps 3 and 4).
func (t *temp) syncClose() error {
	if !failpoint.Skip(SkipSync) {
		if err := t.f.Sync(); err != nil {
			return fmt.Errorf("atomicfile: write %s: %w", t.target, err)
		}
	}
	failpoint.Hit(fpAfterSync)
	t.closed = true
	if err := t.f.Close(); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", t.target, err)
	}
	failpoint.Hit(fpAfterClose)
	return nil
}

// discard closes and removes the temporary file after a failure. After a
// successful rename it no longer exists; the error was then from the
// directory sync and there is nothing to remove.
func (t *temp) discard() {
	if t == nil {
		return
	}
	if !t.closed {
		_ = t.f.Close()
	}
	if !t.renamed {
		_ = os.Remove(t.name)
	}
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
	if err := syncDirUnlessSkipped(newDir); err != nil {
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

// The steps the power-cut tests can leave out (failpoint.EnvSkip), to show
// that each is needed.
const (
	SkipSync    = "atomicfile/sync"    // the temporary file's fsync
	SkipDirSync = "atomicfile/dirsync" // the directory's fsync after the rename
)

func syncDirUnlessSkipped(dir string) error {
	if failpoint.Skip(SkipDirSync) {
		return nil
	}
	return SyncDir(dir)
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

//go:build !windows

package atomicfile

import "os"

// rename replaces newpath with oldpath. rename(2) is atomic: another process
// sees either the old or the new file at newpath, never neither.
func rename(oldpath, newpath string) error {
	return os.Rename(oldpath, newpath)
}

// syncDir fsyncs the directory dir, which makes the creations, renames and
// removals of its entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return err
	}
	return d.Close()
}

// renameOpenFiles: a file can be renamed while it is open (Prepared renames
// before it syncs).
const renameOpenFiles = true

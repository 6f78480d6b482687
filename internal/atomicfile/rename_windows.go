package atomicfile

import (
	"os"

	"golang.org/x/sys/windows"
)

// rename replaces newpath with oldpath. MOVEFILE_WRITE_THROUGH makes
// MoveFileEx return only after the move is flushed to disk, which covers the
// directory metadata that syncDir flushes on Unix. MoveFileEx fails if
// newpath is read-only or open in a process that did not share it for
// deletion.
func rename(oldpath, newpath string) error {
	from, err := windows.UTF16PtrFromString(oldpath)
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	to, err := windows.UTF16PtrFromString(newpath)
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	if err := windows.MoveFileEx(from, to, windows.MOVEFILE_REPLACE_EXISTING|windows.MOVEFILE_WRITE_THROUGH); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// syncDir returns nil: NTFS has no directory fsync that ordinary callers can
// rely on, and the one operation this package needs it for, the rename, is
// already written through by MOVEFILE_WRITE_THROUGH.
func syncDir(dir string) error {
	return nil
}

// renameOpenFiles: Go opens files without FILE_SHARE_DELETE, so an open
// file cannot be renamed (a sharing violation): Prepared syncs and closes
// first.
const renameOpenFiles = false

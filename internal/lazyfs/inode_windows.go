package lazyfs

import (
	"fmt"
	"io/fs"
)

// The power-cut tests run on Linux only (FUSE); the model builds everywhere.
func inodeOf(fi fs.FileInfo) (uint64, error) {
	return 0, fmt.Errorf("lazyfs: inode numbers are read on Unix only (%s)", fi.Name())
}

//go:build unix

package lazyfs

import (
	"fmt"
	"io/fs"
	"syscall"
)

func inodeOf(fi fs.FileInfo) (uint64, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("lazyfs: no inode number for %s", fi.Name())
	}
	return st.Ino, nil
}

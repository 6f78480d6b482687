package atomicfile

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing f's dirty pages to the
// disk now, without waiting (sync_file_range with SYNC_FILE_RANGE_WRITE),
// so that the data travels while the caller does other work and the fsync
// that follows, which is what makes it durable, has less left to wait for.
// It is a hint: an error is ignored.
func startWriteback(f *os.File) {
	_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}

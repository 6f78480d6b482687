//go:build !linux

package atomicfile

import "os"

// startWriteback is a Linux hint (sync_file_range); elsewhere the fsync
// that follows does all the work.
func startWriteback(*os.File) {}

//go:build !linux

package bootguard

import "os"

// syncData makes a copy written in place durable (FlushFileBuffers on
// Windows, fsync elsewhere).
func syncData(f *os.File) error {
	return f.Sync()
}

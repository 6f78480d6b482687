// Package filelock takes an exclusive advisory lock on a file, between
// processes: flock on Unix, LockFileEx on Windows. The boot record and the
// TUF repository use it so that two writers never interleave.
package filelock

import (
	"errors"
	"time"
)

// ErrLocked is returned by Lock when another process held the lock for
// the whole timeout.
var ErrLocked = errors.New("filelock: held by another process")

// poll is how often Lock retries while the lock is held elsewhere.
const poll = 10 * time.Millisecond

// Lock takes an exclusive lock on path (created, 0600, if missing),
// retrying until timeout; it fails with ErrLocked after that. The returned
// function releases the lock.
func Lock(path string, timeout time.Duration) (func(), error) { return lock(path, timeout) }

package filelock_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/filelock"
	"github.com/ringfence/ringfence/internal/testtmp"
)

func TestLockExcludes(t *testing.T) {
	path := filepath.Join(testtmp.Dir(t), "x.lock")
	unlock, err := filelock.Lock(path, time.Second)
	require.NoError(t, err)
	// A second open file description on the same path is another holder
	// (flock and LockFileEx lock per open file, not per process).
	_, err = filelock.Lock(path, 30*time.Millisecond)
	require.ErrorIs(t, err, filelock.ErrLocked)
	unlock()
	unlock2, err := filelock.Lock(path, time.Second)
	require.NoError(t, err, "released")
	unlock2()
}

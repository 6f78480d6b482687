package tufrepo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/filelock"
)

// LockName is the lock file in the repository directory. Every change to
// a repository is made under it, on the repository as it is on disk at
// that moment, so that two writers (a publisher and a running
// ringfence-server) never sign the same metadata version twice with
// different contents.
const LockName = ".ringfence-lock"

// LockTimeout bounds the wait for another writer.
const LockTimeout = 30 * time.Second

// ErrBusy is returned when another writer held the repository for the
// whole LockTimeout.
var ErrBusy = errors.New("tufrepo: the repository is being changed by another process")

// Update opens the repository in dir fresh from disk under its lock (as
// Open does, with clk), runs fn on it and releases the lock. Any change fn makes is written before it
// returns (the Repo's methods write as they go).
func Update(dir, keys string, clk clock.Clock, fn func(*Repo) error) error {
	if _, err := os.Stat(filepath.Join(dir, "metadata", "root.json")); errors.Is(err, fs.ErrNotExist) {
		return noRepository(dir) // and leave no lock file in a directory that is not one
	}
	unlock, err := filelock.Lock(filepath.Join(dir, LockName), LockTimeout)
	if errors.Is(err, filelock.ErrLocked) {
		return fmt.Errorf("%w for more than %v; retry", ErrBusy, LockTimeout)
	}
	if err != nil {
		return fmt.Errorf("tufrepo: lock %s: %w", dir, err)
	}
	defer unlock()
	r, err := Open(dir, keys, clk)
	if err != nil {
		return err
	}
	return fn(r)
}

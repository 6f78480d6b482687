package bootguard

import (
	"errors"
	"fmt"
	"time"

	"github.com/ringfence/ringfence/internal/filelock"
)

// lockFile takes the record's lock file (created if missing), retrying until
// timeout. The returned function releases it.
func lockFile(path string, timeout time.Duration) (func(), error) {
	unlock, err := filelock.Lock(path, timeout)
	if errors.Is(err, filelock.ErrLocked) {
		return nil, fmt.Errorf("%w: %s is held by another process (the daemon or service?) for more than %v; stop it and retry", ErrLocked, path, timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("bootguard: lock boot record: %w", err)
	}
	return unlock, nil
}

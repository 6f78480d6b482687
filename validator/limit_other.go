//go:build !linux && !windows

package validator

import (
	"errors"
	"os"
)

// limitMemory is not available here; Preflight falls back to its timeout.
func limitMemory(*os.Process, uint64) (func(*os.ProcessState) uint64, error) {
	return nil, errors.ErrUnsupported
}

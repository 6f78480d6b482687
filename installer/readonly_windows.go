package installer

import (
	"errors"

	"golang.org/x/sys/windows"
)

// isReadOnlyFS reports whether err says the volume is write-protected.
func isReadOnlyFS(err error) bool {
	return errors.Is(err, windows.ERROR_WRITE_PROTECT) || errors.Is(err, windows.ERROR_NOT_READY)
}

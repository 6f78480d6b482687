//go:build !windows

package atomicfile_test

import "os"

// wantMode is the mode a file written with perm reports: perm exactly.
func wantMode(perm os.FileMode) os.FileMode { return perm }

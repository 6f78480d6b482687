package atomicfile_test

import "os"

// wantMode is the mode a file written with perm reports: Windows keeps only
// the read-only attribute, which Go reports as 0444 or 0666.
func wantMode(perm os.FileMode) os.FileMode {
	if perm&0o200 != 0 {
		return 0o666
	}
	return 0o444
}

// Package testperm is for tests of file permissions: it sets a mode, and
// skips the test where modes mean nothing (Windows, where ACLs decide) or
// where chmod does not stick.
package testperm

import (
	"io/fs"
	"os"
	"testing"
)

// Chmod sets path's mode to mode, or skips the test where that says nothing
// about who may read or write it.
func Chmod(t testing.TB, path string, mode fs.FileMode) {
	t.Helper()
	if !Meaningful {
		t.Skip("file modes do not describe who may read or write on this platform")
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != mode {
		t.Skipf("chmod %04o does not stick here (mode %04o)", uint32(mode), uint32(fi.Mode().Perm()))
	}
}

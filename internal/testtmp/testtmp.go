// Package testtmp gives tests temporary directories that are removed even
// under Wine: Go 1.26's os.RemoveAll fails there ("unlinkat ...: Invalid
// function"), and t.TempDir's cleanup, which uses it, would fail every test
// that runs in `make test-windows`. Dir falls back to removing the tree one
// entry at a time, deepest first.
package testtmp

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Dir returns a new temporary directory, removed when the test ends.
func Dir(t testing.TB) string {
	t.Helper()
	pattern := strings.Map(func(r rune) rune {
		if strings.ContainsRune(`/\:*?"<>| `, r) {
			return '_'
		}
		return r
	}, t.Name())
	if len(pattern) > 40 {
		pattern = pattern[:40]
	}
	dir, err := os.MkdirTemp("", pattern+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := RemoveAll(dir); err != nil {
			t.Errorf("remove temporary directory: %v", err)
		}
	})
	return dir
}

// RemoveAll removes path and everything under it: os.RemoveAll, then, if
// that fails, each entry on its own, files before the directories that hold
// them.
func RemoveAll(path string) error {
	err := os.RemoveAll(path)
	if err == nil {
		return nil
	}
	var paths []string
	_ = filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err == nil {
			paths = append(paths, p)
		}
		return nil
	})
	slices.Reverse(paths) // children before their parents
	for _, p := range paths {
		if rerr := os.Remove(p); rerr != nil && !os.IsNotExist(rerr) {
			return rerr
		}
	}
	return nil
}

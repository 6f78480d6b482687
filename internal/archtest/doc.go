// Package archtest holds no code, only a test that enforces the house rules
// of ../../../shared/STYLE.md mechanically: which packages may import which
// dependencies, one package doc comment per directory, no os.Rename outside
// internal/atomicfile, no runtime.GOOS switches, and golang.org/x/sys/windows
// only in _windows.go files.
package archtest

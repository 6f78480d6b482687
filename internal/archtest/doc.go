// Package archtest holds no code, only tests that enforce house rules
// mechanically: the server side and the host side depend on no package of
// the other (docs/design.md, the package map), which packages may import which
// dependencies, one package doc comment per directory, no os.Rename outside
// internal/atomicfile, no runtime.GOOS switches, and golang.org/x/sys/windows
// only in _windows.go files.
package archtest

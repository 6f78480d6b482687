//go:build !windows

package testtmp

// UnderWine is false off Windows.
func UnderWine() bool { return false }

package testtmp

import "golang.org/x/sys/windows"

// UnderWine reports whether the process runs under Wine (its ntdll exports
// wine_get_version), for the few tests of what Wine does not emulate.
func UnderWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}

package hostconfig

// The Windows defaults, named on every platform: the Windows installer is
// built on Linux (dist/msi) and must install what ringfenced.exe reads.
const (
	// WindowsPath is DefaultPath on Windows.
	WindowsPath = `C:\ProgramData\Ringfence\ringfenced.toml`
	// WindowsRoot is DefaultRoot on Windows.
	WindowsRoot = `C:\ProgramData\Ringfence\root`
)

package hostconfig

// DefaultPath is where ringfenced looks for its configuration.
const DefaultPath = WindowsPath

// DefaultRoot is the default Ringfence root directory.
const DefaultRoot = WindowsRoot

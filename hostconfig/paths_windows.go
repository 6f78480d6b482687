package hostconfig

// DefaultPath is where ringfenced looks for its configuration.
const DefaultPath = `C:\ProgramData\Ringfence\ringfenced.toml`

// DefaultRoot is the default Ringfence root directory.
const DefaultRoot = `C:\ProgramData\Ringfence\root`

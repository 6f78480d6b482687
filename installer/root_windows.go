package installer

// DefaultRoot is the root directory of a host's Ringfence state.
const DefaultRoot = `C:\ProgramData\Ringfence`

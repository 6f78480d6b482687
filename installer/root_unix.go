//go:build unix

package installer

// DefaultRoot is the root directory of a host's Ringfence state.
const DefaultRoot = "/var/lib/ringfence"

//go:build !windows

package hostconfig

// DefaultPath is where ringfenced looks for its configuration.
const DefaultPath = "/etc/ringfence/ringfenced.toml"

// DefaultRoot is the default Ringfence root directory.
const DefaultRoot = "/var/lib/ringfence"

// Package vendorbuild holds the values a vendor's build of ringfenced carries,
// so that a package installs and runs with no hand edits: the fleet's trusted
// TUF root (root.json), the rollout server's URL (the repository and the
// telemetry endpoint: 'ringfence-server serve' serves both on one address),
// and the capability manifest of the reference agent the package ships.
//
// They are embedded at build time. The files in embedded/ are empty
// placeholders; 'make dist' (dist/) builds with 'go build -overlay', which
// maps each placeholder to the vendor's file, so the values are plain bytes
// in the binary: no -ldflags string to quote, nothing in the build info, and
// the same inputs give the same binary. An ordinary build (go build, go test)
// embeds nothing, every value is empty, and the configuration must name the
// repository and the trusted root itself. hostconfig takes these values as
// the defaults of the keys a configuration leaves unset; a key that is set
// wins.
package vendorbuild

import (
	"crypto/sha256"
	_ "embed" // the vendor's values
	"encoding/hex"
	"strings"
)

// The placeholders, relative to this package's directory: the files a build
// overlays with the vendor's (dist/ writes the -overlay file from these).
const (
	RootFile         = "embedded/root.json"
	ServerURLFile    = "embedded/server-url"
	CapabilitiesFile = "embedded/capabilities.json"
)

//go:embed embedded/root.json
var root []byte

//go:embed embedded/server-url
var serverURL string

//go:embed embedded/capabilities.json
var capabilities []byte

// Root is the embedded trusted root.json, or nil when the build embeds none.
// Callers must not modify it.
func Root() []byte { return nonEmpty(root) }

// ServerURL is the embedded rollout server's base URL (the repository and the
// telemetry endpoint), or "" when the build embeds none.
func ServerURL() string { return strings.TrimSpace(serverURL) }

// Capabilities is the embedded capability manifest of the reference agent, or
// nil when the build embeds none (the agent's built-in manifest applies).
// Callers must not modify it.
func Capabilities() []byte { return nonEmpty(capabilities) }

// Embedded says whether the build carries any vendor value.
func Embedded() bool {
	return Root() != nil || ServerURL() != "" || Capabilities() != nil
}

// SHA256 is the lower-case hex SHA-256 of b: how the version output and the
// packaged configuration name an embedded file.
func SHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func nonEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

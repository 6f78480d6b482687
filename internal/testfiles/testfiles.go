// Package testfiles gives tests the repository's shared test data by name:
// the channel files and capability manifests under testdata/, found from
// this package's own source location so that any test package can use them.
package testfiles

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/ringfence/ringfence/validator"
)

// Dir returns the repository's testdata directory.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata")
}

// Channel returns testdata/channels/NAME.rfch.
func Channel(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Dir(), "channels", name+".rfch"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Capabilities returns testdata/capabilities/sensor-VERSION.json.
func Capabilities(t testing.TB, version string) *validator.Capabilities {
	t.Helper()
	c, err := validator.LoadCapabilities(filepath.Join(Dir(), "capabilities", "sensor-"+version+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ChannelOn returns testdata/channels/NAME.rfch moved to channel ch, with
// content version version (0 keeps the file's), re-encoded: the same
// instances on another channel of a root.
func ChannelOn(t testing.TB, name string, ch, version uint32) []byte {
	t.Helper()
	f, err := validator.Parse(Channel(t, name))
	if err != nil {
		t.Fatal(err)
	}
	f.Channel = ch
	if version != 0 {
		f.ContentVersion = version
	}
	b, err := validator.Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

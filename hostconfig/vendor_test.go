package hostconfig_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/internal/vendorbuild"
)

// TestVendorBuild runs only in a vendor build: dist's TestVendorBuildTests
// runs it with the overlay 'make dist' builds with (go test -overlay). The
// embedded values fill the keys a configuration leaves out, and a key that
// is set wins.
func TestVendorBuild(t *testing.T) {
	if vendorbuild.Root() == nil || vendorbuild.ServerURL() == "" {
		t.Skip("not a vendor build: dist's TestVendorBuildTests runs this with the vendor overlay (make test-dist)")
	}
	d := testtmp.Dir(t)
	c, err := hostconfig.Parse([]byte("channels = [291]\n"), d)
	require.NoError(t, err, "a configuration that names neither repository nor trusted_root works on a vendor build")
	require.Equal(t, vendorbuild.ServerURL(), c.Repository)
	require.Equal(t, vendorbuild.ServerURL(), c.Telemetry.Endpoint)
	require.Empty(t, c.TrustedRoot)
	b, err := c.TrustedRootJSON()
	require.NoError(t, err)
	require.Equal(t, vendorbuild.Root(), b)

	require.NoError(t, os.WriteFile(filepath.Join(d, "mine.json"), []byte(`{"mine":1}`), 0o600))
	c, err = hostconfig.Parse([]byte(`channels = [291]
repository = "https://mirror.example.com/repo"
trusted_root = "mine.json"
[telemetry]
endpoint = ""
`), d)
	require.NoError(t, err)
	require.Equal(t, "https://mirror.example.com/repo", c.Repository, "the file wins")
	require.Empty(t, c.Telemetry.Endpoint, `endpoint = "" turns sending off`)
	b, err = c.TrustedRootJSON()
	require.NoError(t, err)
	require.Equal(t, `{"mine":1}`, string(b), "the file's trusted root wins")
}

// TestNoVendorValues: an ordinary build embeds nothing, so a configuration
// must name the repository and the trusted root, as before vendor builds.
func TestNoVendorValues(t *testing.T) {
	if vendorbuild.Embedded() {
		t.Skip("a vendor build")
	}
	d := testtmp.Dir(t)
	_, err := hostconfig.Parse([]byte("channels = [291]\nrepository = \"https://r.example.com/\"\n"), d)
	require.ErrorContains(t, err, "trusted_root: must name the root.json")
	_, err = hostconfig.Parse([]byte("channels = [291]\n"), d)
	require.ErrorContains(t, err, "repository: must be set")
	c := hostconfig.Default()
	require.Empty(t, c.Repository)
	require.Empty(t, c.Telemetry.Endpoint)
	_, err = c.TrustedRootJSON()
	require.ErrorContains(t, err, "trusted_root")
}

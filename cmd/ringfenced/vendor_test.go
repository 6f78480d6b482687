package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/internal/vendorbuild"
	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/telemetry"
	"github.com/ringfence/ringfence/validator"
)

func TestVersionSaysWhatIsEmbedded(t *testing.T) {
	var out bytes.Buffer
	require.Equal(t, 0, run([]string{"version"}, &out, &out))
	require.Contains(t, out.String(), "ringfenced "+version+" (")
	if !vendorbuild.Embedded() {
		require.Contains(t, out.String(), "vendor values: none embedded")
		return
	}
	require.Contains(t, out.String(), "embedded root.json, sha256 "+vendorbuild.SHA256(vendorbuild.Root()))
	require.Contains(t, out.String(), "server:        "+vendorbuild.ServerURL()+" ")
}

// TestVendorBuild runs only in a vendor build: dist's TestVendorBuildTests
// runs it with the overlay 'make dist' builds with (go test -overlay). A
// configuration that leaves the vendor's keys out gets the daemon the
// embedded root, server and capability manifest; the reference agent
// loads content with that manifest, and preflights with it.
func TestVendorBuild(t *testing.T) {
	if vendorbuild.Root() == nil || vendorbuild.ServerURL() == "" {
		t.Skip("not a vendor build: dist's TestVendorBuildTests runs this with the vendor overlay (make test-dist)")
	}
	d := testtmp.Dir(t)
	path := filepath.Join(d, "ringfenced.toml")
	require.NoError(t, os.WriteFile(path, []byte("root = \"root\"\nchannels = [291]\n"), 0o600))
	cfg, err := hostconfig.Load(path)
	require.NoError(t, err)
	opts, err := daemonOptions(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Equal(t, vendorbuild.Root(), opts.TrustedRoot)
	require.Equal(t, vendorbuild.ServerURL(), opts.Config.Repository)
	require.Equal(t, vendorbuild.ServerURL(), opts.Config.Telemetry.Endpoint)
	s, ok := opts.Sender.(*telemetry.Sender)
	require.True(t, ok, "the telemetry endpoint is the vendor's server")
	require.Equal(t, vendorbuild.ServerURL(), s.Endpoint)

	caps, err := referenceCapabilities()
	require.NoError(t, err)
	require.Equal(t, caps.Sensor, opts.Capabilities.Sensor)
	require.Equal(t, caps.Digest, opts.Capabilities.Digest)
	exe, err := os.Executable()
	require.NoError(t, err)
	require.Equal(t, []string{exe, "agent"}, opts.AgentCommand, "the agent's own default is the embedded manifest")
	if b := vendorbuild.Capabilities(); b != nil {
		want, err := validator.ParseCapabilities(b)
		require.NoError(t, err)
		require.Equal(t, want.Digest, caps.Digest)
		require.Equal(t, []string{exe, "agent", "--preflight"}, opts.PreflightCommand, "preflight runs the embedded manifest too")
	} else {
		require.Equal(t, sensor.DefaultCapabilities().Digest, caps.Digest)
		require.Equal(t, sensor.PreflightCommand(exe, ""), opts.PreflightCommand)
	}
}

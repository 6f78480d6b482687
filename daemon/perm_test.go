//go:build !windows

// Modes describe who may write only on Unix; on Windows fileperm checks
// nothing, so there is nothing to refuse.

package daemon_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/fileperm"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/tufrepo"
)

// TestRefusesOpenRoot: the daemon does not start on a root, boot record or
// identity directory others can write; Run says which and the chmod that
// fixes it, before the agent starts or anything is fetched.
func TestRefusesOpenRoot(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	repo, err := tufrepo.Init(t.TempDir(), t.TempDir(), tufrepo.InitOptions{Clock: clk})
	require.NoError(t, err)
	rootJSON, err := repo.RootJSON()
	require.NoError(t, err)
	trusted := filepath.Join(t.TempDir(), "root.json")
	require.NoError(t, os.WriteFile(trusted, rootJSON, 0o600))

	tests := []struct {
		name string
		path string // relative to the root; "." is the root
		mode os.FileMode
		want string // the refusal names it
		fix  string
	}{
		{"root 0777", ".", 0o777, "root directory", "chmod 700"},
		{"root 0770", ".", 0o770, "root directory", "chmod 700"},
		{"boot record 0666", filepath.Join(installer.ChannelsDir, "291", installer.RecordName), 0o666, "boot record of channel 291", "chmod 600"},
		{"identity 0777", installer.IdentityDir, 0o777, "identity directory", "chmod 700"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A host that has run: a boot record and a host key.
			root := filepath.Join(t.TempDir(), "root")
			require.NoError(t, os.MkdirAll(filepath.Join(root, installer.IdentityDir), 0o700))
			in, err := installer.Open(root, installer.Options{Capabilities: testfiles.Capabilities(t, "7.11"), Channels: []uint32{291}})
			require.NoError(t, err)
			require.NoError(t, in.Close())
			path := filepath.Join(root, tc.path)
			require.NoError(t, os.Chmod(path, tc.mode))
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != tc.mode {
				t.Skipf("chmod %04o does not stick here (%v, %v)", uint32(tc.mode), fi, err)
			}

			cfg := hostconfig.Default()
			// Nothing listens there: a daemon that got past the check
			// would fail its poll, not stop.
			cfg.Root, cfg.Repository, cfg.TrustedRoot, cfg.Channel = root, "http://127.0.0.1:1/", trusted, 291
			d, err := daemon.New(daemon.Options{
				Config:           cfg,
				HostID:           "h-test",
				Capabilities:     testfiles.Capabilities(t, "7.11"),
				AgentCommand:     []string{filepath.Join(t.TempDir(), "no-agent")},
				PreflightCommand: []string{filepath.Join(t.TempDir(), "no-preflight")},
				TrustedRoot:      rootJSON,
				Clock:            clk,
				Log:              testLogger(t, "h-test"),
			})
			require.NoError(t, err)
			// Cancelled already: past the check, Run would return nil at
			// once rather than run.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			err = d.Run(ctx)
			require.ErrorIs(t, err, fileperm.ErrTooOpen)
			require.Contains(t, err.Error(), tc.want+" "+filepath.Clean(path)+" is ")
			require.Contains(t, err.Error(), "run '"+tc.fix+" "+filepath.Clean(path)+"'")
		})
	}
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/testtmp"
)

// TestErrorsSayWhatToDo runs commands with wrong input, as a newcomer
// would: each error says what was wrong and what to do, once, and a
// mistyped directory creates nothing.
func TestErrorsSayWhatToDo(t *testing.T) {
	dir := testtmp.Dir(t)
	repo, keys, state := filepath.Join(dir, "repo"), filepath.Join(dir, "keys"), filepath.Join(dir, "state")
	_, errOut, code := runCLI(t, "repo", "init", "--repo", repo, "--keys", keys)
	require.Equal(t, 0, code, errOut)
	missing := filepath.Join(dir, "typo")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"a state directory that is not there", []string{"rollout", "status", "--state", missing}, 2, "state directory " + missing + " does not exist: check --state"},
		{"hosts too", []string{"hosts", "list", "--state", missing}, 2, "does not exist: check --state"},
		{"a repository that is not there", []string{"repo", "refresh", "--repo", missing, "--keys", keys}, 2, "no repository in " + missing + " (no metadata/root.json): check the path, or make one with 'ringfence-server repo init'"},
		{"verify one", []string{"repo", "verify", "--repo", missing}, 2, "no repository in " + missing},
		{"a root with no keys", []string{"repo", "init", "--repo", missing, "--keys", keys, "--threshold", "0"}, 2, "--threshold 0: root needs at least 1 key"},
		{"a key type there is not", []string{"repo", "init", "--repo", missing, "--keys", keys, "--key-type", "rsa"}, 2, `unknown key type "rsa"; use ed25519 or ecdsa-p256`},
		{"a role there is not", []string{"keys", "rotate", "--repo", repo, "--keys", keys, "--role", "admin"}, 2, `unknown role "admin"; the roles are root, targets, snapshot, timestamp, content and rollout`},
		{"no flags, one message", []string{"rollout", "set"}, 2, "ringfence-server rollout set: --keys is required\n"},
		{"a plan that is not there", []string{"rollout", "set", "--repo", repo, "--keys", keys, "--channel", "291", "--plan", missing}, 2, "--plan: open " + missing},
		{"no subcommand", []string{"hosts"}, 2, "want a subcommand, one of: list, show, accept, reject, decommission, tag, help"},
		{"an unknown subcommand", []string{"repo", "create"}, 2, `unknown subcommand "create"; want one of: init, refresh, verify`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := runCLI(t, tc.args...)
			require.Equal(t, tc.code, code, errOut)
			require.Contains(t, errOut, tc.want)
			require.Equal(t, 1, strings.Count(errOut, "\n"), "one line:\n%s", errOut)
			_, err := os.Stat(missing)
			require.True(t, os.IsNotExist(err), "nothing was created at %s", missing)
		})
	}

	// An empty state directory: looking needs no keys, and says what there is.
	require.NoError(t, os.Mkdir(state, 0o700))
	_, errOut, code = runCLI(t, "rollout", "status", "--state", state)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "server.db does not exist", "looking creates no state")
	_, err := os.Stat(filepath.Join(state, "server.db"))
	require.True(t, os.IsNotExist(err))
	_, errOut, code = runCLI(t, "tokens", "create", "--state", state, "--ttl", "1h")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "start one ('ringfence-server serve'), or give --repo and --keys")

	out, errOut, code := runCLI(t, "repo", "--help")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "Usage: ringfence-server repo SUBCOMMAND")
	require.Contains(t, out, "verify   check the repository end to end")
}

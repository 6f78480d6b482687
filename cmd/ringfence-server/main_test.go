package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/internal/pgtest"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/wire"
)

const asMainEnv = "RINGFENCE_TEST_AS_MAIN"

// TestMain lets the test binary stand in for ringfence-server: publish
// re-executes itself for preflight, and TestServeAndOperate runs serve as
// a real child process. pgtest.Main stops the test PostgreSQL server
// (TestServeOnPostgres) when the tests are done.
func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	pgtest.Main(m)
}

func td(parts ...string) string {
	return filepath.Join(append([]string{"..", "..", "testdata"}, parts...)...)
}

func runCLI(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	t.Setenv(asMainEnv, "1") // inherited by the preflight children only
	code := run(args, &out, &errb)
	return out.String(), errb.String(), code
}

// TestServeAndOperate: a real `serve` process; the operator commands find
// it through --state; once it stops they act on the state directory
// directly, and status reads it without keys.
func TestServeAndOperate(t *testing.T) {
	repo, keys, state := testtmp.Dir(t), testtmp.Dir(t), testtmp.Dir(t)
	_, errOut, code := runCLI(t, "repo", "init", "--repo", repo, "--keys", keys)
	require.Equal(t, 0, code, errOut)
	for _, f := range []string{"good-ipc-1001.rfch", "good-ipc-1002.rfch"} {
		_, errOut, code = runCLI(t, "publish", "--repo", repo, "--keys", keys, "--channel", "291", td("channels", f))
		require.Equal(t, 0, code, errOut)
	}

	srv := startServe(t, repo, keys, state, "--eval-interval", "50ms")
	cmd, logs := srv.cmd, srv.logs

	out, errOut, code := runCLI(t, "rollout", "start", "--state", state, "--channel", "291", "--version", "1002", "--from", "1001",
		"--canary-tags", "canary", "--who", "alice", "--why", "weekly content")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "channel 291: start by alice: weekly content")
	require.Contains(t, out, "RUNNING")

	_, errOut, code = runCLI(t, "rollout", "halt", "--state", state, "--channel", "291")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--why are required")

	out, errOut, code = runCLI(t, "rollout", "halt", "--state", state, "--channel", "291", "--who", "bob", "--why", "freeze")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "HALTED")

	_, errOut, code = runCLI(t, "rollout", "promote", "--state", state, "--channel", "291", "--why", "no")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "cannot promote a rollout that is halted")

	out, errOut, code = runCLI(t, "rollout", "status", "--state", state, "--json")
	require.Equal(t, 0, code, errOut)
	var vs []server.View
	require.NoError(t, json.Unmarshal([]byte(out), &vs))
	require.Len(t, vs, 1)
	require.Equal(t, controller.StateHalted, vs[0].State)
	require.Equal(t, "bob", vs[0].Decisions[0].Actor)

	// The fleet's admission from the command line.
	out, errOut, code = runCLI(t, "tokens", "create", "--state", state, "--ttl", "1h", "--tags", "canary", "--max-uses", "5", "--quiet")
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `^rft_[0-9a-f]{12}_\S+\n$`, out)
	_, errOut, code = runCLI(t, "tokens", "create", "--state", state)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--ttl is required")
	pub, _, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	id := wire.HostIDOf(pub)
	out, errOut, code = runCLI(t, "hosts", "accept", "--state", state, "--key", base64.StdEncoding.EncodeToString(pub), "--tags", "canary", "--fleet", "acme", "--why", "lab host")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, id+"  accepted")
	require.Contains(t, out, "tags=canary")
	out, errOut, code = runCLI(t, "hosts", "list", "--state", state, "--admission", "accepted")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "1 hosts in the fleet, 0 pending")
	require.Contains(t, out, id)
	_, errOut, code = runCLI(t, "hosts", "accept", "--state", state, "h-nothex", "--why", "x")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "is not a host id")

	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "serve stops cleanly on SIGINT; logs: %s", logs.String())
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop on SIGINT")
	}
	_, err = os.Stat(filepath.Join(state, server.AddrFile))
	require.True(t, os.IsNotExist(err), "serve removes %s when it stops", server.AddrFile)

	// No server: acting needs the keys; looking does not.
	_, errOut, code = runCLI(t, "rollout", "rollback", "--state", state, "--channel", "291", "--why", "customer report")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "give --repo and --keys")
	out, errOut, code = runCLI(t, "rollout", "rollback", "--state", state, "--repo", repo, "--keys", keys, "--channel", "291", "--who", "carol", "--why", "customer report")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "ROLLED-BACK")
	out, errOut, code = runCLI(t, "rollout", "status", "--state", state)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "ROLLED-BACK")
	require.Contains(t, out, "denied:   [1002]")
	require.Regexp(t, `rollback +canary +by carol: customer report`, out)

	// An operator allows the denied version again, with a reason.
	_, errOut, code = runCLI(t, "rollout", "allow", "--state", state, "--repo", repo, "--keys", keys, "--channel", "291", "--version", "1002")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--why are required")
	out, errOut, code = runCLI(t, "rollout", "allow", "--state", state, "--repo", repo, "--keys", keys, "--channel", "291", "--version", "1002", "--who", "carol", "--why", "false alarm")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "allow by carol: version 1002 allowed again: false alarm")
	require.NotContains(t, out, "denied:")

	_, errOut, code = runCLI(t, "serve", "--repo", repo)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "is required")
}

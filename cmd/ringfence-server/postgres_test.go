package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/fleetdb"
	"github.com/ringfence/ringfence/internal/await"
	"github.com/ringfence/ringfence/internal/pgtest"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/wire"
)

// stopServe stops a serve child with SIGINT, as an operator would.
func stopServe(t *testing.T, p *serveProc) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "serve stops cleanly on SIGINT; logs: %s", p.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop on SIGINT; logs: %s", p.logs.String())
	}
}

// TestServeOnPostgres: serve --db keeps the state in PostgreSQL. A
// rollout started, a host accepted and its telemetry taken through one
// server are there for the operator commands once it stopped, and for
// another server started on the same database with a state directory of
// its own; nothing goes to server.db, and the log never shows the
// password.
func TestServeOnPostgres(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	const password = "s3cr3t-pw" // the test server trusts local connections: it is ignored
	u.User = url.UserPassword(u.User.Username(), password)
	withPassword := u.String()

	repo, keys := newRepo(t)
	for _, f := range []string{"good-ipc-1001.rfch", "good-ipc-1002.rfch"} {
		_, errOut, code := runCLI(t, "publish", "--repo", repo, "--keys", keys, "--channel", "291", td("channels", f))
		require.Equal(t, 0, code, errOut)
	}
	state := testtmp.Dir(t)
	srv := startServe(t, repo, keys, state, "--db", withPassword)

	out, errOut, code := runCLI(t, "rollout", "start", "--state", state, "--channel", "291", "--version", "1002", "--from", "1001",
		"--canary-tags", "canary", "--who", "alice", "--why", "weekly content")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "RUNNING")
	pub, key, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	id := wire.HostIDOf(pub)
	_, errOut, code = runCLI(t, "hosts", "accept", "--state", state, "--key", base64.StdEncoding.EncodeToString(pub), "--tags", "canary", "--why", "lab host")
	require.Equal(t, 0, code, errOut)
	b := wire.Batch{Format: wire.Format, HostID: id, PublicKey: base64.StdEncoding.EncodeToString(pub), SentAt: time.Now().UTC(),
		HostInfo: wire.HostInfo{Versions: map[string]uint32{"291": 1001}},
		Events:   []wire.Event{{ID: "e1", Seq: 7, Kind: wire.EventHeartbeat, Channel: 291, Version: 1001}}}
	body, err := json.Marshal(b)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, srv.url+wire.Path, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set(wire.SignatureHeader, wire.SignatureValue(ed25519.Sign(key, body)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "the batch is acknowledged once committed")

	// A second server on the database is a replica beside the first (the
	// replicas' own tests are in replicas_test.go); an operator command that
	// would write the database directly is refused while they run.
	second := startServe(t, testtmp.Dir(t), keys, testtmp.Dir(t), "--db", dsn)
	_, errOut, code = runCLI(t, "rollout", "halt", "--state", testtmp.Dir(t), "--repo", repo, "--keys", keys, "--db", dsn,
		"--channel", "291", "--who", "mallory", "--why", "behind the servers' back")
	require.Equal(t, 2, code, errOut)
	require.Contains(t, errOut, "another ringfence-server is using this database")
	stopServe(t, second)
	require.Contains(t, second.logs.String(), "a replica")

	stopServe(t, srv)
	logs := srv.logs.String()
	require.Contains(t, logs, "state in PostgreSQL")
	require.Contains(t, logs, "database="+u.Path[1:])
	require.NotContains(t, logs, password)
	_, err = os.Stat(filepath.Join(state, fleetdb.FileName))
	require.True(t, os.IsNotExist(err), "nothing goes to server.db: %v", err)

	// No server: the operator commands look at the database and act on it.
	out, errOut, code = runCLI(t, "rollout", "status", "--state", state, "--db", dsn)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "RUNNING")
	out, errOut, code = runCLI(t, "rollout", "halt", "--state", state, "--repo", repo, "--keys", keys, "--db", dsn,
		"--channel", "291", "--who", "carol", "--why", "freeze")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "HALTED")
	_, errOut, code = runCLI(t, "rollout", "status", "--state", state, "--db", "mysql://x")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--db takes a postgres:// or postgresql:// URL")

	// Another server, another state directory, the same database.
	state2 := testtmp.Dir(t)
	srv2 := startServe(t, repo, keys, state2, "--db", dsn)
	out, errOut, code = runCLI(t, "rollout", "status", "--state", state2, "--json")
	require.Equal(t, 0, code, errOut)
	var vs []server.View
	require.NoError(t, json.Unmarshal([]byte(out), &vs))
	require.Len(t, vs, 1)
	require.Equal(t, controller.StateHalted, vs[0].State)
	var actors []string
	for _, d := range vs[0].Decisions {
		actors = append(actors, d.Actor)
	}
	require.Contains(t, actors, "alice")
	require.Contains(t, actors, "carol")
	out, errOut, code = runCLI(t, "hosts", "show", id, "--state", state2, "--json")
	require.Equal(t, 0, code, errOut)
	var hv server.HostView
	require.NoError(t, json.Unmarshal([]byte(out), &hv))
	require.Equal(t, uint64(7), hv.LastSeq, "the acknowledged batch is there")

	// Backups of a PostgreSQL state are PostgreSQL's business.
	_, errOut, code = runCLI(t, "state", "backup", "--state", state2, "--db", dsn, "--out", filepath.Join(testtmp.Dir(t), "x.db"))
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "pg_dump")
	_, errOut, code = runCLI(t, "state", "backup", "--state", state2, "--out", filepath.Join(testtmp.Dir(t), "x.db"))
	require.Equal(t, 2, code, "the running server says so too")
	require.Contains(t, errOut, "pg_dump")
	stopServe(t, srv2)

	_, errOut, code = runCLI(t, "serve", "--repo", repo, "--keys", keys, "--state", state2, "--db", dsn, "--start-empty")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--start-empty answers a damaged server.db")
}

// TestPublishSharedPostgres: with --db, publish works on a working copy of
// the replicas' shared repository: it pulls the repository into an empty
// directory, publishes, and pushes; the running replica then serves the new
// target, and 'repo export' writes the same repository, which verifies end
// to end as a host would check it.
func TestPublishSharedPostgres(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	repo, keys := newRepo(t)
	_, errOut, code := runCLI(t, "publish", "--repo", repo, "--keys", keys, "--channel", "291", td("channels", "good-ipc-1001.rfch"))
	require.Equal(t, 0, code, errOut)
	srv := startServe(t, repo, keys, testtmp.Dir(t), "--db", dsn) // seeds the database from repo

	work := testtmp.Dir(t)
	out, errOut, code := runCLI(t, "publish", "--db", dsn, "--repo", work, "--keys", keys, "--channel", "291", td("channels", "good-ipc-1002.rfch"))
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "published")
	matches, err := filepath.Glob(filepath.Join(work, "targets", "channels", "291", "*.1002.rfch"))
	require.NoError(t, err)
	require.Len(t, matches, 1, "the working copy holds the repository and the new target")
	target := "/targets/channels/291/" + filepath.Base(matches[0])

	// The replica pulls the new version when it is notified.
	await.Until(t, 30*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get(srv.url + target)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("the target is answered %s", resp.Status)
		}
		return nil
	}, "the replica does not serve the published target: %s", srv.logs)

	export := testtmp.Dir(t)
	out, errOut, code = runCLI(t, "repo", "export", "--db", dsn, export)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "exported version")
	for _, f := range []string{"metadata/timestamp.json", strings.TrimPrefix(target, "/")} {
		want, err := os.ReadFile(filepath.Join(work, f))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(export, f))
		require.NoError(t, err)
		require.Equal(t, want, got, "%s: the export holds what was pushed", f)
	}
	_, errOut, code = runCLI(t, "repo", "verify", "--repo", export)
	require.Equal(t, 0, code, "the exported repository verifies end to end: %s", errOut)

	// A working copy against a database no replica started: refused.
	_, errOut, code = runCLI(t, "publish", "--db", pgtest.Start(t).NewDatabase(t), "--repo", testtmp.Dir(t), "--keys", keys,
		"--channel", "291", td("channels", "good-ipc-1002.rfch"))
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "holds no repository yet")
}

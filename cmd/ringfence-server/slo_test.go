package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/await"
	"github.com/ringfence/ringfence/internal/testtmp"
)

// TestRolloutStartSLO: 'rollout start --slo FILE' carries the checks to a
// 'serve --prometheus' process, whose evaluations query that Prometheus
// (here a stand-in answering one number); 'rollout status' shows each
// check and its last value, and a value out of bounds halts the rollout
// and rolls it back. Without --prometheus (here: no server runs, and the
// command acts on the state directory) the start is refused, saying so;
// a file that is not a list of checks is refused before anything is sent.
func TestRolloutStartSLO(t *testing.T) {
	var value atomic.Value
	value.Store("0.01")
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" || r.FormValue("query") != "sum(errors)" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,%q]}]}}`, value.Load())
	}))
	defer prom.Close()

	repo, keys := newRepo(t)
	for _, f := range []string{"good-ipc-1001.rfch", "good-ipc-1002.rfch"} {
		_, errOut, code := runCLI(t, "publish", "--repo", repo, "--keys", keys, "--channel", "291", td("channels", f))
		require.Equal(t, 0, code, errOut)
	}
	dir := testtmp.Dir(t)
	checks := writeFile(t, dir, "slo.json", []byte(`[{"name": "error-rate", "query": "sum(errors)", "max": 0.05, "grace": "2m"}]`))
	bad := writeFile(t, dir, "bad.json", []byte(`[{"name": "error-rate", "query": "sum(errors)", "maximum": 0.05}]`))

	// No server with --prometheus: refused, saying what to do.
	idle := testtmp.Dir(t)
	_, errOut, code := runCLI(t, "rollout", "start", "--state", idle, "--repo", repo, "--keys", keys, "--channel", "291", "--version", "1002", "--from", "1001", "--slo", checks)
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "started without --prometheus, so they could never run; restart 'ringfence-server serve' with --prometheus URL")
	_, errOut, code = runCLI(t, "rollout", "start", "--state", idle, "--channel", "291", "--version", "1002", "--slo", bad)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `--slo `+bad+`: json: unknown field "maximum"`)

	_, errOut, code = runCLI(t, "serve", "--repo", repo, "--keys", keys, "--state", testtmp.Dir(t), "--prometheus", "localhost:9090")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `--prometheus: slo: Prometheus URL "localhost:9090": want the server's base URL, such as http://prometheus:9090`)

	state := testtmp.Dir(t)
	srv := startServe(t, repo, keys, state, "--eval-interval", "50ms", "--prometheus", prom.URL)
	out, errOut, code := runCLI(t, "rollout", "start", "--state", state, "--channel", "291", "--version", "1002", "--from", "1001",
		"--canary-tags", "canary", "--slo", checks, "--who", "alice", "--why", "weekly content")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "RUNNING")
	require.Contains(t, out, "  slo:      error-rate (max 0.05, grace 2m0s): not evaluated yet\n")

	status := func() string {
		out, errOut, code := runCLI(t, "rollout", "status", "--state", state)
		require.Equal(t, 0, code, errOut)
		return out
	}
	await.Until(t, 10*time.Second, 50*time.Millisecond, func() error {
		if out := status(); !regexp.MustCompile(`error-rate \(max 0.05, grace 2m0s\) at \d\d:\d\d:\d\d: 0.01\n`).MatchString(out) {
			return fmt.Errorf("status:\n%s", out)
		}
		return nil
	}, "the check's value shows; logs: %s", srv.logs)

	value.Store("0.25")
	await.Until(t, 10*time.Second, 50*time.Millisecond, func() error {
		if out := status(); !strings.Contains(out, "ROLLED-BACK") {
			return fmt.Errorf("status:\n%s", out)
		}
		return nil
	}, "the breach rolls the rollout back; logs: %s", srv.logs)
	out = status()
	require.Contains(t, out, "by gate: SLO check error-rate breached: value 0.25 is above its max 0.05")
	require.Regexp(t, `error-rate \(max 0.05, grace 2m0s\) at \d\d:\d\d:\d\d: BREACHED: value 0.25 is above its max 0.05\n`, out)
	require.Contains(t, out, "denied:   [1002]")
}

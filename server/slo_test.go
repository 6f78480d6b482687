package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/server"
)

// fakeProm is a Prometheus HTTP API that answers each query with what the
// test set for it: a value, nothing (an empty vector), or an error body.
type fakeProm struct {
	*httptest.Server
	mu      sync.Mutex
	answers map[string]string // query -> the "result" of a vector, or a whole error body
	queries int
}

func newFakeProm(t *testing.T) *fakeProm {
	p := &fakeProm{answers: map[string]string{}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.queries++
		a, ok := p.answers[r.FormValue("query")]
		switch {
		case !ok:
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
		case strings.HasPrefix(a, `{"status":"error"`):
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, a)
		default:
			fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":%s}}`, a)
		}
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *fakeProm) set(query string, v float64) {
	p.put(query, fmt.Sprintf(`[{"metric":{},"value":[1,"%g"]}]`, v))
}

func (p *fakeProm) put(query, answer string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answers[query] = answer
}

func (p *fakeProm) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queries
}

func bound(x float64) *float64 { return &x }

// startSLO starts a rollout of 1002 from 1001 on channel 291 with the
// checks, one canary stage then all.
func (l *lab) startSLO(t *testing.T, manual bool, checks ...server.SLORequest) (server.View, error) {
	t.Helper()
	_, v, err := l.client().Start(context.Background(), server.StartRequest{ActionRequest: server.ActionRequest{Who: "alice", Why: "weekly content"},
		Channel: 291, Version: 1002, From: 1001, ManualRollback: manual, SLO: checks,
		Stages: []server.StageRequest{{Name: "canary", Tags: []string{"canary"}, Bake: "1h", MinHosts: 1}, {Name: "all", Percent: 100, MinHosts: 1}}})
	return v, err
}

// TestSLOStartRefused: a rollout with SLO checks is refused at its start,
// with a 400 that says what to do, when the server has no --prometheus
// (the checks could never run), when a check is invalid, when Prometheus
// refuses a query or cannot be reached, and when a query returns more
// than one series; a query with no data yet is fine.
func TestSLOStartRefused(t *testing.T) {
	check := server.SLORequest{Name: "error-rate", Query: "sum(errors)", Max: bound(0.05), Grace: "2m"}
	t.Run("no prometheus", func(t *testing.T) {
		l := newLab(t, server.Options{})
		_, err := l.startSLO(t, false, check)
		require.Equal(t, http.StatusBadRequest, code(t, err))
		require.ErrorContains(t, err, "started without --prometheus, so they could never run")
		require.ErrorContains(t, err, "restart 'ringfence-server serve' with --prometheus URL")
		vs, err := l.client().Rollouts(context.Background())
		require.NoError(t, err)
		require.Empty(t, vs, "nothing started")
		_, err = l.startSLO(t, false)
		require.NoError(t, err, "a rollout without checks starts")
	})

	p := newFakeProm(t)
	l := newLab(t, server.Options{Prometheus: p.URL})
	p.put("sum(bad", `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:8: parse error: unclosed left parenthesis"}`)
	p.put("errors", `[{"metric":{"job":"a"},"value":[1,"1"]},{"metric":{"job":"b"},"value":[1,"2"]}]`)
	for _, tc := range []struct {
		name  string
		check server.SLORequest
		want  string
	}{
		{"no bound", server.SLORequest{Name: "x", Query: "up"}, "slo: invalid check: check \"x\": give max, min or both"},
		{"bad grace", server.SLORequest{Name: "x", Query: "up", Max: bound(1), Grace: "soon"}, `SLO check 2 (x): grace "soon" is not a positive duration`},
		{"a query Prometheus refuses", server.SLORequest{Name: "x", Query: "sum(bad", Max: bound(1)}, `SLO check "x": slo: Prometheus refused the query (HTTP 400, bad_data): invalid parameter "query": 1:8: parse error`},
		{"more than one series", server.SLORequest{Name: "x", Query: "errors", Max: bound(1)}, `returned 2 series ({job="a"}, ...); aggregate it to one, e.g. with sum(...) or max(...)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := l.startSLO(t, false, check, tc.check)
			require.Equal(t, http.StatusBadRequest, code(t, err))
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err := l.startSLO(t, false, check)
	require.NoError(t, err, "no data yet is fine at the start")

	t.Run("prometheus down", func(t *testing.T) {
		down := httptest.NewServer(http.NotFoundHandler())
		down.Close()
		l := newLab(t, server.Options{Prometheus: down.URL})
		_, err := l.startSLO(t, false, check)
		require.Equal(t, http.StatusBadRequest, code(t, err))
		require.ErrorContains(t, err, "check that Prometheus at "+down.URL+" is up")
	})

	t.Run("placeholders", func(t *testing.T) {
		// The query Prometheus is sent, and the one the rollout keeps,
		// name the rollout's own channel and version.
		l := newLab(t, server.Options{Prometheus: p.URL})
		templated := server.SLORequest{Name: "errors", Query: `sum(errors_total{channel="{{channel}}",version="{{version}}"})`, Max: bound(1)}
		expanded := `sum(errors_total{channel="291",version="1002"})`
		p.put(expanded, `{"status":"error","errorType":"bad_data","error":"the expanded query reached Prometheus"}`)
		_, err := l.startSLO(t, false, templated)
		require.Equal(t, http.StatusBadRequest, code(t, err))
		require.ErrorContains(t, err, "the expanded query reached Prometheus")
		p.set(expanded, 0)
		v, err := l.startSLO(t, false, templated)
		require.NoError(t, err)
		require.Len(t, v.SLO, 1)
		require.Equal(t, expanded, v.SLO[0].Query)

		typo := server.SLORequest{Name: "typo", Query: `sum(errors_total{version="{{ver}}"})`, Max: bound(1)}
		_, err = newLab(t, server.Options{Prometheus: p.URL}).startSLO(t, false, typo)
		require.Equal(t, http.StatusBadRequest, code(t, err))
		require.ErrorContains(t, err, `check "typo": unknown placeholder at "{{ver}}\"})"; a query may use {{version}} and {{channel}}`)
	})

	_, err = server.New(server.Options{Repo: l.repo, Keys: l.keys, State: t.TempDir(), Prometheus: "prometheus:9090"})
	require.ErrorContains(t, err, "server: --prometheus: slo: Prometheus URL \"prometheus:9090\": want the server's base URL")
}

// TestSLOBreachHalts: at each evaluation the checks of running and paused
// rollouts are queried; a value within bounds changes nothing and shows
// in the view; a breach halts the rollout with the check's name in the
// decision, rolls it back (a signed plan with the version denied) unless
// it was started with manual rollback, and counts in the metrics. A
// halted rollout's checks are no longer queried.
func TestSLOBreachHalts(t *testing.T) {
	for _, manual := range []bool{false, true} {
		t.Run(fmt.Sprintf("manual rollback %v", manual), func(t *testing.T) {
			p := newFakeProm(t)
			l := newLab(t, server.Options{Prometheus: p.URL})
			canary := newHost(t, "canary")
			l.admit(t, canary)
			code, ans := l.post(t, canary, canary.batch(1001))
			require.Equal(t, http.StatusOK, code, ans)
			p.set("errors", 0.01)
			v, err := l.startSLO(t, manual,
				server.SLORequest{Name: "error-rate", Query: "errors", Max: bound(0.05), Grace: "2m"},
				server.SLORequest{Name: "success", Query: "success", Min: bound(0.99), Grace: "10m"})
			require.NoError(t, err)
			require.Len(t, v.SLO, 2)
			require.Nil(t, v.SLO[0].Last, "not evaluated yet")
			require.Equal(t, "2m0s", v.SLO[0].Grace)

			l.clock.Advance(5 * time.Second)
			ds, err := l.srv.Evaluate()
			require.NoError(t, err)
			require.Empty(t, halts(ds))
			v = l.srv.Status()[0]
			require.Equal(t, controller.StateRunning, v.State)
			require.NotNil(t, v.SLO[0].Last)
			require.Equal(t, 0.01, *v.SLO[0].Last.Value)
			require.Equal(t, l.clock.Now(), v.SLO[0].Last.At)
			require.True(t, v.SLO[1].Last.NoData, "no data yet, within its grace")

			// Paused, the checks still run, and still halt.
			_, _, err = l.client().Act(context.Background(), 291, controller.KindPause, "bob", "lunch")
			require.NoError(t, err)
			p.set("errors", 0.07)
			l.clock.Advance(5 * time.Second)
			ds, err = l.srv.Evaluate()
			require.NoError(t, err)
			require.Len(t, halts(ds), 1)
			h := halts(ds)[0]
			require.Equal(t, "gate", h.Actor)
			require.Equal(t, "SLO check error-rate breached: value 0.07 is above its max 0.05", h.Reason)

			v = l.srv.Status()[0]
			require.Contains(t, v.SLO[0].Last.Breach, "value 0.07 is above its max 0.05")
			m := body(t, get(t, l.http.URL+"/metrics"))
			require.Contains(t, m, "ringfence_slo_breaches_total 1")
			require.Contains(t, m, "ringfence_slo_query_failures_total 0")
			p0 := l.plan(t)
			if manual {
				require.Equal(t, controller.StateHalted, v.State)
				require.Equal(t, controller.KindHalt, v.Decisions[0].Kind)
				require.Empty(t, p0.Deny, "halted, the plan frozen where it was")
			} else {
				require.Equal(t, controller.StateRolledBack, v.State)
				require.Equal(t, controller.KindRollback, v.Decisions[0].Kind)
				require.Equal(t, controller.KindHalt, v.Decisions[1].Kind)
				require.Equal(t, []uint32{1002}, p0.Deny)
				require.Equal(t, []rollout.Stage{{Name: "fleet", Percent: 100, Version: 1001}}, p0.Stages)
			}

			// Halted: no more queries, no more decisions.
			n := p.count()
			l.clock.Advance(5 * time.Second)
			ds, err = l.srv.Evaluate()
			require.NoError(t, err)
			require.Empty(t, ds)
			require.Equal(t, n, p.count())
		})
	}
}

// TestSLONoDataGrace: a check whose query has no data, or fails, halts
// its rollout once that has lasted longer than its grace, not before; the
// failure is counted and its error shown.
func TestSLONoDataGrace(t *testing.T) {
	p := newFakeProm(t)
	l := newLab(t, server.Options{Prometheus: p.URL})
	_, err := l.startSLO(t, false, server.SLORequest{Name: "latency-p99", Query: "latency", Max: bound(0.3), Grace: "1m"})
	require.NoError(t, err)
	start := l.clock.Now()
	l.clock.Set(start.Add(time.Minute))
	ds, err := l.srv.Evaluate()
	require.NoError(t, err)
	require.Empty(t, halts(ds), "exactly the grace")

	p.put("latency", `{"status":"error","errorType":"execution","error":"query processing would load too many samples into memory"}`)
	l.clock.Set(start.Add(time.Minute + time.Second))
	ds, err = l.srv.Evaluate()
	require.NoError(t, err)
	require.Len(t, halts(ds), 1)
	require.Equal(t, "SLO check latency-p99 breached: no data for 1m1s, longer than its grace of 1m0s (no data is never good); "+
		"the last query failed: slo: Prometheus refused the query (HTTP 400, execution): query processing would load too many samples into memory", halts(ds)[0].Reason)
	v := l.srv.Status()[0]
	require.Equal(t, controller.StateRolledBack, v.State)
	require.Contains(t, v.SLO[0].Last.Error, "too many samples")
	require.Contains(t, body(t, get(t, l.http.URL+"/metrics")), "ringfence_slo_query_failures_total 1")

	// The view as JSON: what 'rollout status --json' prints.
	b, err := json.Marshal(v.SLO)
	require.NoError(t, err)
	require.Contains(t, string(b), `"name":"latency-p99","query":"latency","max":0.3,"grace":"1m0s","last":{`)
}

// TestSLOUnwatched: a rollout with checks, loaded by a server started
// without --prometheus, is shown as not evaluated (and logged), and its
// evaluations go on without them; started again with it, its checks run.
func TestSLOUnwatched(t *testing.T) {
	p := newFakeProm(t)
	l := newLab(t, server.Options{Prometheus: p.URL})
	_, err := l.startSLO(t, false, server.SLORequest{Name: "error-rate", Query: "errors", Max: bound(0.05), Grace: "1m"})
	require.NoError(t, err)
	l.stop()
	var logs strings.Builder
	l.start(t, server.Options{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	require.Contains(t, logs.String(), "the rollout has SLO checks, but this server has no --prometheus: they are NOT evaluated; restart with --prometheus URL")
	l.clock.Advance(time.Hour)
	ds, err := l.srv.Evaluate()
	require.NoError(t, err)
	require.Empty(t, halts(ds))
	v := l.srv.Status()[0]
	require.Nil(t, v.SLO[0].Last)
	require.Contains(t, v.SLO[0].Unwatched, "no --prometheus")

	l.stop()
	l.start(t, server.Options{Prometheus: p.URL})
	p.set("errors", 0.01)
	_, err = l.srv.Evaluate()
	require.NoError(t, err)
	v = l.srv.Status()[0]
	require.Empty(t, v.SLO[0].Unwatched)
	require.Equal(t, 0.01, *v.SLO[0].Last.Value)
}

// code is the HTTP status of the API's error answer.
func code(t *testing.T, err error) int {
	t.Helper()
	var ae *server.APIError
	require.ErrorAs(t, err, &ae)
	return ae.Code
}

func halts(ds []controller.Decision) []controller.Decision {
	var out []controller.Decision
	for _, d := range ds {
		if d.Kind == controller.KindHalt {
			out = append(out, d)
		}
	}
	return out
}

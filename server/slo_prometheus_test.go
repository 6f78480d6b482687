package server_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/internal/await"
	"github.com/ringfence/ringfence/internal/syncbuf"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/slo"
)

// realProm is a Prometheus server the test started as a child process,
// scraping, every second, a gauge the test serves on loopback and sets.
type realProm struct {
	url   string
	gauge prometheus.Gauge
	log   *syncbuf.Buffer
}

// startPrometheus starts prometheus (skipping the test where it is not
// installed) on a free loopback port, its storage in a temporary
// directory, scraping the test's gauge every second, and waits until it
// is ready.
func startPrometheus(t *testing.T) *realProm {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("SKIPPED the SLO checks against a real Prometheus (no prometheus on PATH); 'make deps' installs prometheus")
	}
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ringfence_test_error_ratio", Help: "The test's SLO value."})
	reg.MustRegister(g)
	target := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(target.Close)

	dir := testtmp.Dir(t)
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: slo-test\n    static_configs:\n      - targets: [%q]\n",
		target.Listener.Addr().String())
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	p := &realProm{url: "http://" + addr, gauge: g, log: &syncbuf.Buffer{}}
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = p.log, p.log
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	await.Until(t, 30*time.Second, 50*time.Millisecond, func() error {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("prometheus exited: %v\n%s", err, p.log)
		default:
		}
		resp, err := http.Get(p.url + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %s", resp.Status)
		}
		return nil
	}, "prometheus on %s is ready", addr)
	return p
}

// until waits until the query answers want at the current time: the
// gauge's value, scraped, is in Prometheus.
func (p *realProm) until(t *testing.T, query string, want float64) {
	t.Helper()
	c, err := slo.NewClient(p.url, nil)
	require.NoError(t, err)
	await.Until(t, 30*time.Second, 50*time.Millisecond, func() error {
		v, err := c.Query(context.Background(), query, time.Now())
		if err != nil {
			return err
		}
		if v != want {
			return fmt.Errorf("%s is %g", query, v)
		}
		return nil
	}, "Prometheus scraped %s = %g (log: %s)", query, want, p.log)
}

// TestSLOPrometheus runs a real server's SLO checks against a real
// Prometheus that scrapes a gauge the test sets. The server's clock is
// the test's (a fake set to the real time before each evaluation, so that
// the queries see what Prometheus scraped): a value within bounds changes
// nothing; a value out of bounds halts the rollout and rolls it back (the
// signed plan denies the version) with the check's name in the decision;
// a query that has no data does not halt within its grace, and halts
// once it has lasted longer.
func TestSLOPrometheus(t *testing.T) {
	began := time.Now()
	p := startPrometheus(t)
	l := newLab(t, server.Options{Prometheus: p.url})
	canary := newHost(t, "canary")
	l.admit(t, canary)
	code, ans := l.post(t, canary, canary.batch(1001))
	require.Equal(t, http.StatusOK, code, ans)
	evaluate := func(at time.Time) []controller.Decision {
		t.Helper()
		l.clock.Set(at)
		ds, err := l.srv.Evaluate()
		require.NoError(t, err)
		return ds
	}

	// In bounds: nothing happens.
	const query = `max(ringfence_test_error_ratio{job="slo-test"})`
	p.gauge.Set(0.01)
	p.until(t, query, 0.01)
	l.clock.Set(time.Now())
	_, err := l.startSLO(t, false, server.SLORequest{Name: "error-ratio", Query: query, Max: bound(0.05), Grace: "2s"})
	require.NoError(t, err)
	require.Empty(t, halts(evaluate(time.Now())))
	v := l.srv.Status()[0]
	require.Equal(t, controller.StateRunning, v.State)
	require.Equal(t, 0.01, *v.SLO[0].Last.Value)

	// Out of bounds: halted and rolled back, by the gate, naming the check.
	p.gauge.Set(0.2)
	p.until(t, query, 0.2)
	ds := evaluate(time.Now())
	require.Len(t, halts(ds), 1)
	require.Equal(t, "SLO check error-ratio breached: value 0.2 is above its max 0.05", halts(ds)[0].Reason)
	v = l.srv.Status()[0]
	require.Equal(t, controller.StateRolledBack, v.State)
	require.Equal(t, controller.KindRollback, v.Decisions[0].Kind)
	require.Equal(t, "gate", v.Decisions[0].Actor)
	require.Equal(t, controller.KindHalt, v.Decisions[1].Kind)
	require.Contains(t, v.Decisions[1].Reason, "SLO check error-ratio breached")
	plan := l.plan(t)
	require.Equal(t, []uint32{1002}, plan.Deny)
	require.Equal(t, []rollout.Stage{{Name: "fleet", Percent: 100, Version: 1001}}, plan.Stages)

	// No data: a series nothing exports. Not a breach within the 2 s grace
	// from the rollout's start; a breach after it.
	_, _, err = l.client().Allow(context.Background(), 291, 1002, "alice", "the SLO breach was the test's")
	require.NoError(t, err)
	start := time.Now()
	l.clock.Set(start)
	missing := `max(ringfence_test_missing{job="slo-test"})`
	_, err = l.startSLO(t, false, server.SLORequest{Name: "latency", Query: missing, Max: bound(1), Grace: "2s"})
	require.NoError(t, err, "no data is no reason to refuse the start")
	require.Empty(t, halts(evaluate(start.Add(time.Second))))
	require.Empty(t, halts(evaluate(start.Add(2*time.Second))), "exactly the grace")
	v = l.srv.Status()[0]
	require.Equal(t, controller.StateRunning, v.State)
	require.True(t, v.SLO[0].Last.NoData)
	require.Empty(t, v.SLO[0].Last.Error, "no data is not a failed query")
	ds = evaluate(start.Add(2*time.Second + 100*time.Millisecond))
	require.Len(t, halts(ds), 1)
	require.Equal(t, "SLO check latency breached: no data for 2.1s, longer than its grace of 2s (no data is never good)", halts(ds)[0].Reason)
	require.Equal(t, controller.StateRolledBack, l.srv.Status()[0].State)

	m := body(t, get(t, l.http.URL+"/metrics"))
	require.Contains(t, m, "ringfence_slo_breaches_total 2")
	require.Contains(t, m, "ringfence_slo_query_failures_total 0")
	t.Logf("Prometheus %s: the whole test took %v", p.url, time.Since(began).Round(time.Millisecond))
}

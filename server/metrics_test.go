package server_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/wire"
)

// wantFamilies is every ringfence_ family /metrics exposes: type, HELP and
// label names, as they were when the exposition was written by hand
// (docs/server.md lists them; monitoring/ builds alerts and a dashboard on
// them).
var wantFamilies = map[string]struct {
	typ    dto.MetricType
	help   string
	labels []string
}{
	"ringfence_checkins_total":               {dto.MetricType_COUNTER, "Requests for timestamp.json (each host's check for news).", nil},
	"ringfence_telemetry_batches_total":      {dto.MetricType_COUNTER, "Telemetry batches accepted.", nil},
	"ringfence_telemetry_stale_events_total": {dto.MetricType_COUNTER, "Events at or below the host's last applied seq (a replay or a resend; acknowledged, without effect).", nil},
	"ringfence_telemetry_events_total":       {dto.MetricType_COUNTER, "Telemetry events taken, by type and content version.", []string{"type", "version"}},
	"ringfence_telemetry_rejected_total":     {dto.MetricType_COUNTER, "Telemetry batches refused, by reason.", []string{"reason"}},
	"ringfence_store_commit_failures_total":  {dto.MetricType_COUNTER, "Changes that could not be committed (nothing of them took effect; retried).", nil},
	"ringfence_plan_sign_failures_total":     {dto.MetricType_COUNTER, "Attempts to sign a committed plan that failed (retried until one succeeds).", nil},
	"ringfence_gate_decisions_total":         {dto.MetricType_COUNTER, "Rollout decisions, by kind.", []string{"kind"}},
	"ringfence_telemetry_queued_total":       {dto.MetricType_COUNTER, "Telemetry batches a replica took into the database's inbox for the leader (replicas only).", nil},
	"ringfence_replica_leader":               {dto.MetricType_GAUGE, "1 while this replica holds the leader lease (a server alone always leads).", nil},
	"ringfence_hosts":                        {dto.MetricType_GAUGE, "Hosts in the fleet (admitted).", nil},
	"ringfence_pending_hosts":                {dto.MetricType_GAUGE, "Keys waiting for admission (they count toward nothing).", nil},
	"ringfence_store_failing":                {dto.MetricType_GAUGE, "1 while the latest commit failed.", nil},
	"ringfence_unsigned_plans":               {dto.MetricType_GAUGE, "Plans committed but not yet signed (retried).", nil},
	"ringfence_ring_hosts":                   {dto.MetricType_GAUGE, "Known hosts in each stage of a channel's rollout.", []string{"channel", "stage"}},
	"ringfence_version_hosts":                {dto.MetricType_GAUGE, "Hosts running each version of a channel.", []string{"channel", "version"}},
	"ringfence_rollout_stage":                {dto.MetricType_GAUGE, "Current stage index of each channel's rollout.", []string{"channel", "state"}},
	"ringfence_gate_statistic":               {dto.MetricType_GAUGE, "The gate's log10 likelihood ratio; it halts at ringfence_gate_threshold.", []string{"channel"}},
	"ringfence_gate_threshold":               {dto.MetricType_GAUGE, "log10(3/alpha): the threshold of each of the gate's three tests.", []string{"channel"}},
	"ringfence_gate_test_statistic":          {dto.MetricType_GAUGE, "Each gate test's own statistic (reported failures, silence, health); ringfence_gate_statistic is the largest.", []string{"channel", "test"}},
	"ringfence_slo_query_failures_total":     {dto.MetricType_COUNTER, "SLO queries that failed (Prometheus unreachable or refusing, a timeout, not one number); each counts as no data.", nil},
	"ringfence_slo_breaches_total":           {dto.MetricType_COUNTER, "SLO checks breached, each halting its rollout.", nil},
}

// scrape fetches /metrics in the text format and parses it.
func scrape(t *testing.T, l *lab) map[string]*dto.MetricFamily {
	t.Helper()
	resp := get(t, l.http.URL+"/metrics")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4"), resp.Header.Get("Content-Type"))
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return mfs
}

// TestMetricsFamilies: with a rollout, an admitted host's batch and a
// refused one, /metrics holds every family with its type, HELP text and
// labels unchanged, and the Go and process collectors' families.
func TestMetricsFamilies(t *testing.T) {
	l := newLab(t, server.Options{})
	h := newHost(t, "canary")
	l.admit(t, h)
	l.startRollout(t, 1002, 1001)
	code, ans := l.post(t, h, h.batch(1001, wire.Event{Kind: wire.EventHealthy, Version: 1001}))
	require.Equal(t, http.StatusOK, code, ans)
	code, _ = l.postRaw(t, []byte("{"), "")
	require.NotEqual(t, http.StatusOK, code)

	mfs := scrape(t, l)
	for name, want := range wantFamilies {
		mf := mfs[name]
		require.NotNil(t, mf, "%s is exposed", name)
		require.Equal(t, want.typ, mf.GetType(), name)
		require.Equal(t, want.help, mf.GetHelp(), name)
		for _, m := range mf.Metric {
			var got []string
			for _, lp := range m.Label {
				got = append(got, lp.GetName())
			}
			require.ElementsMatch(t, want.labels, got, name)
		}
	}
	for name := range mfs {
		if strings.HasPrefix(name, "ringfence_") {
			require.Contains(t, wantFamilies, name, "a new family belongs in wantFamilies and docs/server.md")
		}
	}
	require.Contains(t, mfs, "go_goroutines", "the Go collector")
	require.Contains(t, mfs, "process_open_fds", "the process collector")
	require.Equal(t, 1.0, mfs["ringfence_hosts"].Metric[0].GetGauge().GetValue())
	require.Equal(t, 2.0, mfs["ringfence_telemetry_events_total"].Metric[0].GetCounter().GetValue()+mfs["ringfence_telemetry_events_total"].Metric[1].GetCounter().GetValue(), "a heartbeat and a healthy event")
}

// TestMetricsOpenMetrics: a scraper that asks for OpenMetrics gets it.
func TestMetricsOpenMetrics(t *testing.T) {
	l := newLab(t, server.Options{})
	get(t, l.http.URL+"/metadata/timestamp.json")
	resp := get(t, l.http.URL+"/metrics", "Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "application/openmetrics-text"), resp.Header.Get("Content-Type"))
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	m := string(b)
	require.Contains(t, m, "# TYPE ringfence_checkins counter")
	require.Contains(t, m, "ringfence_checkins_total 1")
	require.True(t, strings.HasSuffix(m, "# EOF\n"))
}

// TestMetricsStagesNamedAlike: two stages with one name (nothing forbids
// it) are one series, their hosts added up; the scrape does not fail.
func TestMetricsStagesNamedAlike(t *testing.T) {
	l := newLab(t, server.Options{})
	hs := []*host{newHost(t, "canary"), newHost(t, ""), newHost(t, "")}
	l.admit(t, hs...)
	for _, h := range hs {
		code, ans := l.post(t, h, h.batch(1001))
		require.Equal(t, http.StatusOK, code, ans)
	}
	_, _, err := l.client().Start(context.Background(), server.StartRequest{ActionRequest: server.ActionRequest{Who: "t", Why: "t"},
		Channel: 291, Version: 1002, From: 1001,
		Stages: []server.StageRequest{{Name: "ring", Tags: []string{"canary"}}, {Name: "ring", Percent: 100}}})
	require.NoError(t, err)
	mf := scrape(t, l)["ringfence_ring_hosts"]
	require.NotNil(t, mf)
	require.Len(t, mf.Metric, 1)
	require.True(t, slices.ContainsFunc(mf.Metric[0].Label, func(lp *dto.LabelPair) bool { return lp.GetName() == "stage" && lp.GetValue() == "ring" }))
	require.Equal(t, 3.0, mf.Metric[0].GetGauge().GetValue())
}

// TestMetricsKnownLabelsAtZero: a fresh server exposes every refusal
// reason handleTelemetry counts (read from its source) and every decision
// kind at 0, so that increase() sees the first one.
func TestMetricsKnownLabelsAtZero(t *testing.T) {
	l := newLab(t, server.Options{})
	mfs := scrape(t, l)
	values := func(name, label string) map[string]float64 {
		out := map[string]float64{}
		for _, m := range mfs[name].GetMetric() {
			for _, lp := range m.Label {
				if lp.GetName() == label {
					out[lp.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
		return out
	}
	src, err := os.ReadFile("telemetry.go")
	require.NoError(t, err)
	reasons := regexp.MustCompile(`metrics\.rejected\("([^"]+)"\)`).FindAllStringSubmatch(string(src), -1)
	require.GreaterOrEqual(t, len(reasons), 6)
	got := values("ringfence_telemetry_rejected_total", "reason")
	for _, r := range reasons {
		require.Contains(t, got, r[1], "reason %q is exposed from the start (add it to refusals in metrics.go)", r[1])
		require.Zero(t, got[r[1]])
	}
	got = values("ringfence_gate_decisions_total", "kind")
	for _, k := range []controller.Kind{controller.KindStart, controller.KindAdvance, controller.KindWait, controller.KindHalt,
		controller.KindRollback, controller.KindPause, controller.KindResume, controller.KindPromote, controller.KindComplete, controller.KindAllow} {
		require.Contains(t, got, k.String())
		require.Zero(t, got[k.String()])
	}
}

package server

import (
	"cmp"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/wire"
)

// Label cardinality is bounded whatever hosts send: an event's type label
// is one of wire.Kinds or "other", its version label a version some
// rollout names (from, to, denied) or "other"; and at most maxSeries
// series are kept (past it, "other").
const maxSeries = 10_000

// maxVersionSeries bounds the version gauges and the dashboard's rows per
// channel: the most common versions and those the rollout names; the rest
// fold into "other".
const maxVersionSeries = 16

// metrics are the server's Prometheus metrics, exposed on /metrics through
// github.com/prometheus/client_golang: one well-kept implementation of the
// exposition formats (the text format, OpenMetrics and the protobuf format,
// negotiated with the scraper), of escaping and of the rules a family
// must obey (one type, unique series), which hand-written text had to get
// right by itself. Each server has its own registry, never the global
// default one (tests run several servers in one process). The registry
// also holds the Go runtime and process collectors (go_*, process_*:
// memory, goroutines, open descriptors against the limit --max-conns is
// derived from).
//
// Counters are client_golang counters the server increments; the gauges
// are computed from the server's state at scrape time, under s.mu
// (serverCollector), as the API computes its views.
type metrics struct {
	reg *prometheus.Registry

	checkins      prometheus.Counter
	storeFailures prometheus.Counter
	signFailures  prometheus.Counter
	batches       prometheus.Counter
	queued        prometheus.Counter
	leader        prometheus.Gauge
	stale         prometheus.Counter
	events        *prometheus.CounterVec // type, version
	refused       *prometheus.CounterVec // reason
	decisions     *prometheus.CounterVec // kind
	sloFailures   prometheus.Counter
	sloBreaches   prometheus.Counter

	mu     sync.Mutex
	series map[[2]string]bool // events' label pairs so far, at most maxSeries (and "other")

	once    sync.Once
	handler http.Handler
}

func newMetrics() *metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	vec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	m := &metrics{
		reg:           prometheus.NewRegistry(),
		checkins:      counter("ringfence_checkins_total", "Requests for timestamp.json (each host's check for news)."),
		batches:       counter("ringfence_telemetry_batches_total", "Telemetry batches accepted."),
		queued:        counter("ringfence_telemetry_queued_total", "Telemetry batches a replica took into the database's inbox for the leader (replicas only)."),
		leader:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "ringfence_replica_leader", Help: "1 while this replica holds the leader lease (a server alone always leads)."}),
		stale:         counter("ringfence_telemetry_stale_events_total", "Events at or below the host's last applied seq (a replay or a resend; acknowledged, without effect)."),
		events:        vec("ringfence_telemetry_events_total", "Telemetry events taken, by type and content version.", "type", "version"),
		refused:       vec("ringfence_telemetry_rejected_total", "Telemetry batches refused, by reason.", "reason"),
		storeFailures: counter("ringfence_store_commit_failures_total", "Changes that could not be committed (nothing of them took effect; retried)."),
		signFailures:  counter("ringfence_plan_sign_failures_total", "Attempts to sign a committed plan that failed (retried until one succeeds)."),
		decisions:     vec("ringfence_gate_decisions_total", "Rollout decisions, by kind.", "kind"),
		sloFailures:   counter("ringfence_slo_query_failures_total", "SLO queries that failed (Prometheus unreachable or refusing, a timeout, not one number); each counts as no data."),
		sloBreaches:   counter("ringfence_slo_breaches_total", "SLO checks breached, each halting its rollout."),
		series:        map[[2]string]bool{},
	}
	m.reg.MustRegister(m.checkins, m.batches, m.queued, m.leader, m.stale, m.events, m.refused, m.storeFailures, m.signFailures, m.decisions, m.sloFailures, m.sloBreaches,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The refusal reasons and decision kinds are few and known: each is
	// exposed at 0 from the start, so that increase() and rate() see the
	// first one (a series that appears at 1 shows no increase) and the
	// alerts in monitoring/ fire on it.
	for _, r := range refusals {
		m.refused.WithLabelValues(r)
	}
	for _, k := range decisionKinds {
		m.decisions.WithLabelValues(k.String())
	}
	return m
}

// refusals are the reasons handleTelemetry refuses a batch for.
var refusals = []string{"bad-signature", "malformed", "too-large", "rate-limited", "not-admitted", "pending-full"}

// decisionKinds are the kinds of controller.Decision.
var decisionKinds = []controller.Kind{controller.KindStart, controller.KindAdvance, controller.KindWait, controller.KindHalt,
	controller.KindRollback, controller.KindPause, controller.KindResume, controller.KindPromote, controller.KindComplete, controller.KindAllow}

// batch counts an admitted host's batch: its events above lastSeq (the
// host's last applied seq before it) by type and version, the rest as
// stale. version labels a version (the caller holds s.mu).
func (m *metrics) batch(b *wire.Batch, lastSeq uint64, version func(uint32) string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.batches.Inc()
	for _, e := range b.Events {
		if e.Seq <= lastSeq {
			m.stale.Inc()
			continue
		}
		k := [2]string{"other", version(e.Version)}
		if e.Kind.Known() {
			k[0] = e.Kind.String()
		}
		if !m.series[k] && len(m.series) >= maxSeries {
			k = [2]string{"other", "other"}
		}
		m.series[k] = true
		m.events.WithLabelValues(k[0], k[1]).Inc()
	}
}

// versionLabel labels version v of an event for the metrics: "none" (no
// content), a version some rollout names, or "other". The caller holds
// s.mu.
func (s *Server) versionLabel(v uint32) string {
	if v == 0 {
		return "none"
	}
	for _, r := range s.ctl.Rollouts() {
		if v == r.To || v == r.From || slices.Contains(r.Deny, v) {
			return strconv.FormatUint(uint64(v), 10)
		}
	}
	return "other"
}

// foldVersions keeps the counts of the versions keep names and of the most
// common others, up to maxVersionSeries labels; the rest add up under
// "other".
func foldVersions(counts map[uint32]int, keep ...uint32) map[string]int {
	out := map[string]int{}
	vs := slices.SortedFunc(maps.Keys(counts), func(a, b uint32) int {
		return cmp.Or(-cmp.Compare(counts[a], counts[b]), cmp.Compare(a, b))
	})
	for _, v := range vs {
		if len(out) < maxVersionSeries-1 || slices.Contains(keep, v) {
			out[versionName(v)] += counts[v]
		} else {
			out["other"] += counts[v]
		}
	}
	return out
}

// rejected counts a refused batch; reason is one of refusals (the
// callers' literals), so the label stays bounded.
func (m *metrics) rejected(reason string) { m.refused.WithLabelValues(reason).Inc() }

func (m *metrics) decision(kind controller.Kind) { m.decisions.WithLabelValues(kind.String()).Inc() }

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	m := s.metrics
	m.once.Do(func() {
		m.reg.MustRegister(serverCollector{s})
		m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
			// A metric that cannot be collected is logged and left out;
			// the rest is still served.
			ErrorHandling:     promhttp.ContinueOnError,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelError),
			EnableOpenMetrics: true,
		})
	})
	m.handler.ServeHTTP(w, r)
}

// The gauges serverCollector computes at scrape time.
var (
	descHosts        = prometheus.NewDesc("ringfence_hosts", "Hosts in the fleet (admitted).", nil, nil)
	descPending      = prometheus.NewDesc("ringfence_pending_hosts", "Keys waiting for admission (they count toward nothing).", nil, nil)
	descStoreFailing = prometheus.NewDesc("ringfence_store_failing", "1 while the latest commit failed.", nil, nil)
	descUnsigned     = prometheus.NewDesc("ringfence_unsigned_plans", "Plans committed but not yet signed (retried).", nil, nil)
	descRingHosts    = prometheus.NewDesc("ringfence_ring_hosts", "Known hosts in each stage of a channel's rollout.", []string{"channel", "stage"}, nil)
	descVersionHosts = prometheus.NewDesc("ringfence_version_hosts", "Hosts running each version of a channel.", []string{"channel", "version"}, nil)
	descStage        = prometheus.NewDesc("ringfence_rollout_stage", "Current stage index of each channel's rollout.", []string{"channel", "state"}, nil)
	descStatistic    = prometheus.NewDesc("ringfence_gate_statistic", "The gate's log10 likelihood ratio; it halts at ringfence_gate_threshold.", []string{"channel"}, nil)
	descThreshold    = prometheus.NewDesc("ringfence_gate_threshold", "log10(3/alpha): the threshold of each of the gate's three tests.", []string{"channel"}, nil)
	descTestStat     = prometheus.NewDesc("ringfence_gate_test_statistic", "Each gate test's own statistic (reported failures, silence, health); ringfence_gate_statistic is the largest.", []string{"channel", "test"}, nil)
)

// serverCollector computes the gauges from the server's state at each
// scrape, under s.mu: one consistent view, as the API's.
type serverCollector struct{ s *Server }

func (serverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHosts, descPending, descStoreFailing, descUnsigned, descRingHosts, descVersionHosts, descStage, descStatistic, descThreshold, descTestStat} {
		ch <- d
	}
}

func (c serverCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, labels...)
		if err != nil { // a label that is not UTF-8: reported, never a panic
			m = prometheus.NewInvalidMetric(d, err)
		}
		ch <- m
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.leads() {
		return // a replica that does not lead holds no current state: the leader's gauges are the fleet's
	}
	gauge(descHosts, float64(s.ctl.Hosts()))
	gauge(descPending, float64(s.reg.PendingCount()))
	gauge(descStoreFailing, map[bool]float64{false: 0, true: 1}[s.health.LastError != ""])
	gauge(descUnsigned, float64(len(s.unsigned)))
	rs := s.ctl.Rollouts()
	for _, r := range rs {
		channel := strconv.FormatUint(uint64(r.Channel), 10)
		// Stages named alike (nothing forbids it) add up under their name:
		// a series appears once.
		stages := map[string]int{}
		for i, n := range s.ctl.StageSizes(r.Channel) {
			stages[r.Stages[i].Name] += n
		}
		for _, name := range slices.Sorted(maps.Keys(stages)) {
			gauge(descRingHosts, float64(stages[name]), channel, name)
		}
		vs := foldVersions(s.ctl.Versions(r.Channel), append([]uint32{r.From, r.To}, r.Deny...)...)
		for _, v := range slices.Sorted(maps.Keys(vs)) {
			gauge(descVersionHosts, float64(vs[v]), channel, v)
		}
		gauge(descStage, float64(r.Stage), channel, string(r.State))
		gauge(descStatistic, controller.Finite(r.Result.Statistic), channel)
		gauge(descThreshold, r.Result.Threshold, channel)
		reported, silence, health := r.Statistics()
		gauge(descTestStat, reported, channel, "reported")
		gauge(descTestStat, silence, channel, "silence")
		gauge(descTestStat, health, channel, "health")
	}
}

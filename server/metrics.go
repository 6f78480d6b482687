package server

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

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

// metrics are the server's counters, written in the Prometheus text
// exposition format by hand: a handful of counters and gauges do not
// justify the client library's dependency tree.
type metrics struct {
	checkins      atomic.Uint64
	storeFailures atomic.Uint64
	signFailures  atomic.Uint64

	mu        sync.Mutex
	batches   uint64
	events    map[[2]string]uint64 // type, version
	stale     uint64
	refused   map[string]uint64 // reason
	decisions map[string]uint64 // kind
}

func newMetrics() *metrics {
	return &metrics{events: map[[2]string]uint64{}, refused: map[string]uint64{}, decisions: map[string]uint64{}}
}

// batch counts an admitted host's batch: its events above lastSeq (the
// host's last applied seq before it) by type and version, the rest as
// stale. version labels a version (the caller holds s.mu).
func (m *metrics) batch(b *wire.Batch, lastSeq uint64, version func(uint32) string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.batches++
	for _, e := range b.Events {
		if e.Seq <= lastSeq {
			m.stale++
			continue
		}
		k := [2]string{"other", version(e.Version)}
		if e.Kind.Known() {
			k[0] = e.Kind.String()
		}
		if _, ok := m.events[k]; !ok && len(m.events) >= maxSeries {
			k = [2]string{"other", "other"}
		}
		m.events[k]++
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

func (m *metrics) rejected(reason string) {
	m.mu.Lock()
	m.refused[reason]++
	m.mu.Unlock()
}

func (m *metrics) decision(kind controller.Kind) {
	m.mu.Lock()
	m.decisions[kind.String()]++
	m.mu.Unlock()
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.writeMetrics(w)
}

func (s *Server) writeMetrics(w io.Writer) {
	m := s.metrics
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("# HELP ringfence_checkins_total Requests for timestamp.json (each host's check for news).")
	p("# TYPE ringfence_checkins_total counter")
	p("ringfence_checkins_total %d", m.checkins.Load())

	m.mu.Lock()
	p("# HELP ringfence_telemetry_batches_total Telemetry batches accepted.")
	p("# TYPE ringfence_telemetry_batches_total counter")
	p("ringfence_telemetry_batches_total %d", m.batches)
	p("# HELP ringfence_telemetry_stale_events_total Events at or below the host's last applied seq (a replay or a resend; acknowledged, without effect).")
	p("# TYPE ringfence_telemetry_stale_events_total counter")
	p("ringfence_telemetry_stale_events_total %d", m.stale)
	p("# HELP ringfence_telemetry_events_total Telemetry events taken, by type and content version.")
	p("# TYPE ringfence_telemetry_events_total counter")
	for _, k := range slices.SortedFunc(maps.Keys(m.events), func(a, b [2]string) int {
		return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
	}) {
		p("ringfence_telemetry_events_total{type=%q,version=%q} %d", k[0], k[1], m.events[k])
	}
	p("# HELP ringfence_telemetry_rejected_total Telemetry batches refused, by reason.")
	p("# TYPE ringfence_telemetry_rejected_total counter")
	for _, k := range slices.Sorted(maps.Keys(m.refused)) {
		p("ringfence_telemetry_rejected_total{reason=%q} %d", k, m.refused[k])
	}
	p("# HELP ringfence_store_commit_failures_total Changes that could not be committed (nothing of them took effect; retried).")
	p("# TYPE ringfence_store_commit_failures_total counter")
	p("ringfence_store_commit_failures_total %d", m.storeFailures.Load())
	p("# HELP ringfence_plan_sign_failures_total Attempts to sign a committed plan that failed (retried until one succeeds).")
	p("# TYPE ringfence_plan_sign_failures_total counter")
	p("ringfence_plan_sign_failures_total %d", m.signFailures.Load())
	p("# HELP ringfence_gate_decisions_total Rollout decisions, by kind.")
	p("# TYPE ringfence_gate_decisions_total counter")
	for _, k := range slices.Sorted(maps.Keys(m.decisions)) {
		p("ringfence_gate_decisions_total{kind=%q} %d", k, m.decisions[k])
	}
	m.mu.Unlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	p("# HELP ringfence_hosts Hosts in the fleet (admitted).")
	p("# TYPE ringfence_hosts gauge")
	p("ringfence_hosts %d", s.ctl.Hosts())
	p("# HELP ringfence_pending_hosts Keys waiting for admission (they count toward nothing).")
	p("# TYPE ringfence_pending_hosts gauge")
	p("ringfence_pending_hosts %d", s.reg.PendingCount())
	p("# HELP ringfence_store_failing 1 while the latest commit failed.")
	p("# TYPE ringfence_store_failing gauge")
	p("ringfence_store_failing %d", map[bool]int{false: 0, true: 1}[s.health.LastError != ""])
	p("# HELP ringfence_unsigned_plans Plans committed but not yet signed (retried).")
	p("# TYPE ringfence_unsigned_plans gauge")
	p("ringfence_unsigned_plans %d", len(s.unsigned))
	p("# HELP ringfence_ring_hosts Known hosts in each stage of a channel's rollout.")
	p("# TYPE ringfence_ring_hosts gauge")
	rs := s.ctl.Rollouts()
	for _, r := range rs {
		for i, n := range s.ctl.StageSizes(r.Channel) {
			p("ringfence_ring_hosts{channel=\"%d\",stage=%q} %d", r.Channel, r.Stages[i].Name, n)
		}
	}
	p("# HELP ringfence_version_hosts Hosts running each version of a channel.")
	p("# TYPE ringfence_version_hosts gauge")
	for _, r := range rs {
		vs := foldVersions(s.ctl.Versions(r.Channel), append([]uint32{r.From, r.To}, r.Deny...)...)
		for _, v := range slices.Sorted(maps.Keys(vs)) {
			p("ringfence_version_hosts{channel=\"%d\",version=%q} %d", r.Channel, v, vs[v])
		}
	}
	p("# HELP ringfence_rollout_stage Current stage index of each channel's rollout.")
	p("# TYPE ringfence_rollout_stage gauge")
	for _, r := range rs {
		p("ringfence_rollout_stage{channel=\"%d\",state=%q} %d", r.Channel, r.State, r.Stage)
	}
	p("# HELP ringfence_gate_statistic The gate's log10 likelihood ratio; it halts at ringfence_gate_threshold.")
	p("# TYPE ringfence_gate_statistic gauge")
	for _, r := range rs {
		p("ringfence_gate_statistic{channel=\"%d\"} %g", r.Channel, controller.Finite(r.Result.Statistic))
	}
	p("# HELP ringfence_gate_threshold log10(1/alpha).")
	p("# TYPE ringfence_gate_threshold gauge")
	for _, r := range rs {
		p("ringfence_gate_threshold{channel=\"%d\"} %g", r.Channel, r.Result.Threshold)
	}
}

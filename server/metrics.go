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
	"github.com/ringfence/ringfence/telemetry"
)

// maxSeries bounds the label combinations of the events counter (a type
// and version pair per series); past it events count under version
// "other".
const maxSeries = 10_000

// metrics are the server's counters, written in the Prometheus text
// exposition format by hand: a handful of counters and gauges do not
// justify the client library's dependency tree.
type metrics struct {
	checkins atomic.Uint64

	mu        sync.Mutex
	batches   uint64
	events    map[[2]string]uint64 // type, version
	dupes     uint64
	refused   map[string]uint64 // reason
	decisions map[string]uint64 // kind
}

func newMetrics() *metrics {
	return &metrics{events: map[[2]string]uint64{}, refused: map[string]uint64{}, decisions: map[string]uint64{}}
}

func (m *metrics) batch(b *telemetry.Batch, fresh []bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.batches++
	for i, e := range b.Events {
		if !fresh[i] {
			m.dupes++
			continue
		}
		k := [2]string{e.Type, strconv.FormatUint(uint64(e.Version), 10)}
		if _, ok := m.events[k]; !ok && len(m.events) >= maxSeries {
			k[1] = "other"
		}
		m.events[k]++
	}
}

func (m *metrics) rejected(reason string) {
	m.mu.Lock()
	m.refused[reason]++
	m.mu.Unlock()
}

func (m *metrics) decision(kind string) {
	m.mu.Lock()
	m.decisions[kind]++
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
	p("# HELP ringfence_telemetry_duplicate_events_total Events received again (already taken; acknowledged, not counted).")
	p("# TYPE ringfence_telemetry_duplicate_events_total counter")
	p("ringfence_telemetry_duplicate_events_total %d", m.dupes)
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
	p("# HELP ringfence_gate_decisions_total Rollout decisions, by kind.")
	p("# TYPE ringfence_gate_decisions_total counter")
	for _, k := range slices.Sorted(maps.Keys(m.decisions)) {
		p("ringfence_gate_decisions_total{kind=%q} %d", k, m.decisions[k])
	}
	m.mu.Unlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	p("# HELP ringfence_hosts Hosts that have reported.")
	p("# TYPE ringfence_hosts gauge")
	p("ringfence_hosts %d", s.ctl.Hosts())
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
		vs := s.ctl.Versions(r.Channel)
		for _, v := range slices.Sorted(maps.Keys(vs)) {
			p("ringfence_version_hosts{channel=\"%d\",version=\"%d\"} %d", r.Channel, v, vs[v])
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

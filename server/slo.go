package server

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/slo"
)

// The rollouts' SLO checks (docs/slo.md): at each evaluation the leader
// runs the PromQL queries of every running or paused rollout that has
// checks against Options.Prometheus, without holding s.mu (a slow
// Prometheus must not stall telemetry or the API), then, under s.mu, halts
// the rollouts whose checks were breached in the same change as the
// gate's decisions: decided, committed, then signed (commit.go). The
// evaluator's memory (when each check last had data, its last value) is
// this process's: a restart or a new leader begins to watch afresh, and
// the grace of a check with no data counts from then.

// sloBudget bounds all the SLO queries of one evaluation together: a
// query still running then is cut off and counts as no data.
const sloBudget = 5 * time.Second

// SLORequest is one SLO check of a StartRequest, as operators write it in
// the file of 'rollout start --slo': a PromQL instant query that returns
// one number, its bounds (at least one), and its grace as a duration such
// as "2m" ("" or "0s": none).
type SLORequest struct {
	Name  string   `json:"name"`
	Query string   `json:"query"`
	Max   *float64 `json:"max,omitempty"`
	Min   *float64 `json:"min,omitempty"`
	Grace string   `json:"grace,omitempty"`
}

// check turns the request into a slo.Check of the rollout of version on
// channel, its query's placeholders expanded (i counts from 1, for
// errors).
func (q SLORequest) check(i int, channel, version uint32) (slo.Check, error) {
	g, err := duration(fmt.Sprintf("SLO check %d (%.64s): grace", i, q.Name), q.Grace, true)
	if err != nil {
		return slo.Check{}, err
	}
	return slo.Check{Name: q.Name, Query: q.Query, Max: q.Max, Min: q.Min, Grace: g}.Expand(channel, version)
}

// SLOView is one of a rollout's SLO checks as shown: the check, and what
// its last evaluation found (nil: none yet, or none since this server
// started). Unwatched says why this server does not evaluate it at all
// (it has no --prometheus).
type SLOView struct {
	SLORequest
	Last      *slo.Status `json:"last,omitempty"`
	Unwatched string      `json:"unwatched,omitempty"`
}

// unwatched is SLOView.Unwatched on a server without --prometheus.
const unwatched = "this server has no --prometheus: the check is not evaluated"

// sloViews are r's checks as shown. The caller holds s.mu.
func (s *Server) sloViews(r *controller.Rollout) []SLOView {
	if len(r.SLO) == 0 {
		return nil
	}
	var last []slo.Status
	if s.slo != nil {
		last = s.slo.Status(r.Channel, r.To, r.Started)
	}
	out := make([]SLOView, len(r.SLO))
	for i, c := range r.SLO {
		out[i].SLORequest = SLORequest{Name: c.Name, Query: c.Query, Max: c.Max, Min: c.Min}
		if c.Grace > 0 {
			out[i].Grace = c.Grace.String()
		}
		if i < len(last) && !last[i].At.IsZero() {
			st := last[i]
			out[i].Last = &st
		}
		if s.slo == nil && r.Active() && r.State != controller.StateHalted {
			out[i].Unwatched = unwatched
		}
	}
	return out
}

// checkSLO refuses a rollout whose checks could never run (no
// --prometheus) or cannot work as written: each query is run once, and one
// that Prometheus refuses, that returns more or other than one number, or
// that cannot reach Prometheus at all fails the start. No data is fine:
// the new version's series may not exist yet. It runs without s.mu.
func (s *Server) checkSLO(spec controller.Spec) error {
	if len(spec.SLO) == 0 {
		return nil
	}
	if s.prom == nil {
		return fmt.Errorf("%w: the rollout has %d SLO check(s), but this ringfence-server was started without --prometheus, so they could never run; "+
			"restart 'ringfence-server serve' with --prometheus URL (the Prometheus server that answers the queries) and start the rollout through it", errBadRequest, len(spec.SLO))
	}
	if err := slo.Validate(spec.SLO); err != nil {
		return err // before any query: a check too long or without bounds is not sent
	}
	ctx, cancel := context.WithTimeout(context.Background(), sloBudget)
	defer cancel()
	if err := slo.Probe(ctx, s.prom, spec.SLO, s.clock.Now()); err != nil {
		return fmt.Errorf("%w: %v; fix the check, or check that Prometheus at %s is up, and start again", errBadRequest, err, s.prom)
	}
	return nil
}

// evaluateSLO runs the checks of every running or paused rollout that has
// some, at most sloBudget in all, and returns what they found; nothing
// when this server has no Prometheus, is read-only or does not lead. It
// takes s.mu only to read the rollouts: the queries run without it.
func (s *Server) evaluateSLO() []slo.Result {
	s.mu.Lock()
	if s.slo == nil || s.opts.ReadOnly || !s.leads() {
		s.mu.Unlock()
		return nil
	}
	var rs []slo.Rollout
	for _, r := range s.ctl.Rollouts() {
		if len(r.SLO) > 0 && (r.State == controller.StateRunning || r.State == controller.StatePaused) {
			rs = append(rs, slo.Rollout{Channel: r.Channel, To: r.To, Started: r.Started, Checks: slices.Clone(r.SLO)})
		}
	}
	s.mu.Unlock()
	// Called with no rollouts too: the evaluator learns that none was
	// watched in this evaluation (a rollout resumed later gets its graces
	// again).
	ctx, cancel := context.WithTimeout(context.Background(), sloBudget)
	defer cancel()
	res := s.slo.Evaluate(ctx, rs)
	for _, r := range res {
		for _, f := range r.Failed {
			s.metrics.sloFailures.Inc()
			if f.New {
				s.log.Warn("SLO query failed; it counts as no data, and the check's grace applies", "channel", r.Channel, "version", r.To, "check", f.Check, "err", f.Err)
			}
		}
	}
	return res
}

// haltOnBreach halts, through the controller, each rollout whose checks
// were breached in res, if it is still the rollout that was evaluated (an
// operator may have rolled it back and started another meanwhile). It
// returns the decisions and the number of breaches. The caller holds s.mu,
// inside change.
func (s *Server) haltOnBreach(res []slo.Result, now time.Time) ([]controller.Decision, int) {
	var ds []controller.Decision
	n := 0
	for _, r := range res {
		if r.Breach == nil {
			continue
		}
		ro, ok := s.ctl.Rollout(r.Channel)
		if !ok || ro.To != r.To || !ro.Started.Equal(r.Started) {
			continue
		}
		if d := s.ctl.Breach(r.Channel, r.To, r.Breach.String(), now); len(d) > 0 {
			ds = append(ds, d...)
			n++
		}
	}
	return ds, n
}

// warnUnwatched logs every active rollout whose SLO checks this server
// cannot run (started on a server with --prometheus, loaded by one
// without). The caller holds s.mu.
func (s *Server) warnUnwatched() {
	if s.slo != nil {
		return
	}
	for _, r := range s.ctl.Rollouts() {
		if len(r.SLO) > 0 && (r.State == controller.StateRunning || r.State == controller.StatePaused) {
			s.log.Error("the rollout has SLO checks, but this server has no --prometheus: they are NOT evaluated; restart with --prometheus URL",
				"channel", r.Channel, "version", r.To, "checks", len(r.SLO))
		}
	}
}

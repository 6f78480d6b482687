package controller

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ringfence/ringfence/gate"
)

// This file is the rollout's decision logic on counts: what the server
// measures by walking its fleet and what the fleet simulator (cmd/ringfence-sim)
// measures from its model go through the same code.

// NewRollout checks spec (filling defaults; canaryHosts and canaryTags make
// the canary group of the default stages), and returns the running rollout
// with its start decision. deny is the channel's deny list so far.
func NewRollout(spec Spec, canaryHosts, canaryTags []string, deny []uint32, actor, why string, now time.Time) (*Rollout, Decision, error) {
	if slices.Contains(deny, spec.To) {
		return nil, Decision{}, fmt.Errorf("%w: version %d was rolled back on channel %d and is denied; publish a new version", ErrState, spec.To, spec.Channel)
	}
	spec, err := spec.withDefaults(canaryHosts, canaryTags)
	if err != nil {
		return nil, Decision{}, err
	}
	r := &Rollout{Spec: spec, State: StateRunning, Started: now, StageStarted: now, Updated: now, Deny: slices.Clone(deny), FirstWave: spec.Stages[0].Wave > 0}
	r.Result = r.testGate().Evaluate(r.GateState)
	r.SilenceResult, r.HealthResult = r.Result, r.Result
	if why == "" {
		why = fmt.Sprintf("version %d from %d, %s schedule, %d stages", spec.To, spec.From, spec.Schedule, len(spec.Stages))
	}
	return r, r.decide(now, KindStart, actor, why, r.evidence("")), nil
}

// MovesHosts reports whether a decision of this kind changes the plan
// hosts follow (so it must be signed).
func MovesHosts(kind Kind) bool {
	switch kind {
	case KindStart, KindAdvance, KindPromote, KindComplete, KindRollback, KindAllow, KindWave:
		return true
	}
	return false
}

// Observe takes the counts measured at now: the failures since the last
// observation go to the gate's three tests and to the promotion test, and
// the statistic joins the history.
func (r *Rollout) Observe(cnt Counts, now time.Time) {
	prev := r.Counts
	t := r.testGate()
	reported := r.batch(prev, cnt, cnt.TreatedFailures-cnt.TreatedSilent-r.GateState.Treated, cnt.ControlFailures-cnt.ControlSilent-r.GateState.Control)
	silent := r.batch(prev, cnt, cnt.TreatedSilent-r.SilenceState.Treated, cnt.ControlSilent-r.SilenceState.Control)
	judged := gate.Judged{N: cnt.TreatedJudged - r.HealthState.Treated - r.HealthState.Control, Bad: cnt.TreatedUnhealthy - r.HealthState.Treated, P0: cnt.HealthP0}
	t.Update(&r.GateState, reported)
	t.Update(&r.SilenceState, silent)
	t.UpdateJudged(&r.HealthState, judged)
	r.Promote.Update(&r.GateState.Promote, reported)
	r.Promote.Update(&r.SilenceState.Promote, silent)
	r.Promote.UpdateJudged(&r.HealthState.Promote, judged)
	r.Result = t.Evaluate(r.GateState)
	r.SilenceResult = t.Evaluate(r.SilenceState)
	r.HealthResult = t.Evaluate(r.HealthState)
	for _, o := range []gate.Result{r.SilenceResult, r.HealthResult} {
		if o.Statistic > r.Result.Statistic {
			r.Result = o
		}
	}
	r.Counts = cnt
	r.point(now)
}

// Statistics returns each test's statistic (JSON-safe): failures hosts
// reported, silence, health.
func (r *Rollout) Statistics() (reported, silence, health float64) {
	t := r.testGate()
	return Finite(t.Evaluate(r.GateState).Statistic), Finite(r.SilenceResult.Statistic), Finite(r.HealthResult.Statistic)
}

// Promoted reports whether the promotion test passed on every test that
// has evidence to give: the health test only when hosts report health.
func (r *Rollout) Promoted() bool { return r.promoted() }

func (r *Rollout) promoted() bool {
	ok := r.Promote.Passed(r.GateState.Promote) && r.Promote.Passed(r.SilenceState.Promote)
	if r.HealthState.Expected > 0 {
		ok = ok && r.Promote.Passed(r.HealthState.Promote)
	}
	return ok
}

// batch is one test's batch: its failures since the last observation, and
// the hosts at risk. The failures happened while the treated share moved
// between its value then and now (hosts install, fail, revert); the batch
// takes the larger share. Under the null a failure is then at most that
// likely to be a treated one, so the likelihood ratio stays a
// supermartingale and the false-halt bound holds (docs/gate.md).
func (r *Rollout) batch(prev, cnt Counts, treated, control int64) gate.Batch {
	b := gate.Batch{TreatedFailures: treated, ControlFailures: control}
	nowT, nowC := cnt.TreatedAtRisk+cnt.TreatedFailures-prev.TreatedFailures, cnt.ControlAtRisk+cnt.ControlFailures-prev.ControlFailures
	b.TreatedAtRisk, b.ControlAtRisk = nowT, nowC
	pt, pc := prev.TreatedAtRisk, prev.ControlAtRisk
	if pt+pc > 0 && (nowT+nowC == 0 || share(pt, pc) > share(nowT, nowC)) {
		b.TreatedAtRisk, b.ControlAtRisk = pt, pc
	}
	return b
}

// testGate is each of the gate's three tests: a third of the rollout's
// alpha, so that the false-halt bound holds for all together.
func (r *Rollout) testGate() gate.Params {
	p := r.Gate
	p.Alpha /= 3
	return p
}

func share(t, c int64) float64 { return float64(t) / float64(t+c) }

// Step decides at now from the last observation: a halt (and its rollback)
// when the gate rejects; otherwise, while running, expose the rest of a
// stage once its first wave passed its load, then advance or complete when
// the promotion test passed or the bake time is over, and the stage's
// healthy hosts are there.
func (r *Rollout) Step(now time.Time) []Decision {
	if r.State != StateRunning && r.State != StatePaused {
		return nil
	}
	cnt := r.Counts
	if r.Result.Reject {
		what := "failures hosts reported"
		switch {
		case r.SilenceResult.Reject && r.Result == r.SilenceResult:
			what = "silence"
		case r.HealthResult.Reject && r.Result == r.HealthResult:
			what = fmt.Sprintf("the agents' health (%d of %d treated hosts judged unhealthy; a healthy one is at most %.2g%% likely to be)", cnt.TreatedUnhealthy, cnt.TreatedJudged, 100*cnt.HealthP0)
		}
		return r.Halt(now, "gate", fmt.Sprintf("the gate rejected version %d on %s: statistic %.2f reached threshold %.2f (%d of %d treated hosts failed, %d silent; %d of %d controls, %d silent)",
			r.To, what, r.Result.Statistic, r.Result.Threshold, cnt.TreatedFailures, cnt.Treated, cnt.TreatedSilent, cnt.ControlFailures, cnt.Control, cnt.ControlSilent), "")
	}
	if r.State != StateRunning {
		return nil
	}
	st := r.Stages[r.Stage]
	if r.FirstWave {
		first := (min(int64(st.Wave), cnt.WaveHosts) + 1) / 2
		if cnt.WaveLoaded < first {
			return r.wait(now, "wave", fmt.Sprintf("stage %s: %d of the %d hosts of its first wave passed their load (%d needed before the rest)", st.Name, cnt.WaveLoaded, st.Wave, first))
		}
		r.FirstWave = false
		return []Decision{r.decide(now, KindWave, "gate", fmt.Sprintf("stage %s: %d hosts of its first wave of %d passed their load; the rest of the stage", st.Name, cnt.WaveLoaded, st.Wave), r.evidence(""))}
	}
	need := min(int64(st.MinHosts), cnt.StageHosts)
	early := r.promoted()
	if left := r.StageStarted.Add(st.Bake).Sub(now); left > 0 && !early {
		return r.wait(now, "bake", fmt.Sprintf("stage %s bakes for %v (%v left) unless the evidence shows the new version is no more than %gx worse first", st.Name, st.Bake, left.Round(time.Second), r.Promote.Margin))
	}
	if e := r.GateState.Expected; !early && e < st.MinEvidence && now.Before(r.StageStarted.Add(st.MaxBake)) {
		return r.wait(now, "evidence", fmt.Sprintf("stage %s: the gate has seen %.2f of the %.2f expected failures it needs before a larger ring (waiting up to %v)", st.Name, e, st.MinEvidence, st.MaxBake))
	}
	if cnt.Healthy < need {
		return r.wait(now, "hosts", fmt.Sprintf("stage %s: %d of the %d hosts needed reported healthy", st.Name, cnt.Healthy, need))
	}
	why := fmt.Sprintf("stage %s baked %v", st.Name, st.Bake)
	if baked := now.Sub(r.StageStarted); baked < st.Bake {
		why = fmt.Sprintf("stage %s promoted after %v of its %v bake: the evidence shows version %d is no more than %gx worse than the controls (beta %g)", st.Name, baked.Round(time.Second), st.Bake, r.To, r.Promote.Margin, r.Promote.Beta)
	}
	return r.advance(now, "gate", fmt.Sprintf("%s; %d hosts healthy (%d needed); gate statistic %.2f below %.2f",
		why, cnt.Healthy, need, r.Result.Statistic, r.Result.Threshold))
}

// point adds the statistic to the history: when it changed, or at least
// once a minute.
func (r *Rollout) point(now time.Time) {
	p := Point{Time: now, Statistic: Finite(r.Result.Statistic), Threshold: r.Result.Threshold, Stage: r.Stage}
	if n := len(r.History); n > 0 {
		last := r.History[n-1]
		if last.Statistic == p.Statistic && last.Stage == p.Stage && now.Sub(last.Time) < time.Minute {
			return
		}
	}
	if len(r.History) >= MaxHistory {
		r.History = append(r.History[:0], r.History[1:]...)
	}
	r.History = append(r.History, p)
}

func (r *Rollout) wait(now time.Time, why, reason string) []Decision {
	if r.Waiting == why {
		return nil
	}
	d := r.decide(now, KindWait, "gate", reason, r.evidence(""))
	r.Waiting = why
	return []Decision{d}
}

func (r *Rollout) advance(now time.Time, actor, reason string) []Decision {
	if r.Stage >= len(r.Stages)-1 {
		r.State = StateCompleted
		return []Decision{r.decide(now, KindComplete, actor, reason, r.evidence(""))}
	}
	kind := KindAdvance
	if actor != "gate" {
		kind = KindPromote
	}
	r.Stage++
	r.StageStarted = now
	r.FirstWave = r.Stages[r.Stage].Wave > 0
	return []Decision{r.decide(now, kind, actor, reason, r.evidence(""))}
}

// CanaryFailure is the canary rule: a revert or a rejection of the new
// version (what) by a host of the canary group halts a running or paused
// rollout at once, and rolls it back, whatever the gate's statistic says.
// count measures the evidence as of now, for the halt's record.
func (r *Rollout) CanaryFailure(count func() Counts, now time.Time, host, what string) []Decision {
	if r.State != StateRunning && r.State != StatePaused {
		return nil
	}
	r.Observe(count(), now)
	return r.Halt(now, "gate", fmt.Sprintf("%s of version %d in the canary group (host %s)", what, r.To, host), host)
}

// Halt stops the rollout where it is. A halt by the gate (actor "gate")
// rolls back at once unless the rollout was started with ManualRollback.
// host names the host whose report caused it, if one did.
func (r *Rollout) Halt(now time.Time, actor, reason, host string) []Decision {
	r.State = StateHalted
	out := []Decision{r.decide(now, KindHalt, actor, reason, r.evidence(host))}
	if actor == "gate" && !r.ManualRollback {
		out = append(out, r.rollback(now, actor, fmt.Sprintf("automatic after the halt: every host back to version %d, version %d denied", r.From, r.To)))
	}
	return out
}

func (r *Rollout) rollback(now time.Time, actor, reason string) Decision {
	r.State = StateRolledBack
	if !slices.Contains(r.Deny, r.To) {
		r.Deny = append(r.Deny, r.To)
	}
	return r.decide(now, KindRollback, actor, reason, r.evidence(""))
}

// Act applies an operator's action: pause, resume, halt, rollback or
// promote, recorded with who and why.
func (r *Rollout) Act(kind Kind, actor, why string, now time.Time) (Decision, error) {
	if actor == "" {
		actor = "operator"
	}
	if why == "" {
		return Decision{}, errors.New("controller: say why (it is recorded with the decision)")
	}
	bad := func() (Decision, error) {
		return Decision{}, fmt.Errorf("%w: cannot %s a rollout that is %s", ErrState, kind, r.State)
	}
	switch kind {
	case KindPause:
		if r.State != StateRunning {
			return bad()
		}
		r.State = StatePaused
	case KindResume:
		if r.State != StatePaused && r.State != StateHalted {
			return bad()
		}
		r.State = StateRunning
	case KindHalt:
		if r.State != StateRunning && r.State != StatePaused {
			return bad()
		}
		return r.Halt(now, actor, why, "")[0], nil
	case KindRollback:
		if !r.Active() {
			return bad()
		}
		return r.rollback(now, actor, why), nil
	case KindPromote:
		if r.State != StateRunning && r.State != StatePaused {
			return bad()
		}
		return r.advance(now, actor, why)[0], nil
	default:
		return Decision{}, fmt.Errorf("controller: unknown action %.20q; use pause, resume, halt, rollback or promote", kind)
	}
	return r.decide(now, kind, actor, why, r.evidence("")), nil
}

// Allow takes version v off the channel's deny list: an operator's
// decision that a version rolled back may be rolled out again (a
// false alarm, say), recorded with who and why. Hosts that reverted v keep
// it quarantined: that was their own boot guard's finding.
func (r *Rollout) Allow(v uint32, actor, why string, now time.Time) (Decision, error) {
	if actor == "" {
		actor = "operator"
	}
	if why == "" {
		return Decision{}, errors.New("controller: say why (it is recorded with the decision)")
	}
	i := slices.Index(r.Deny, v)
	if i < 0 {
		return Decision{}, fmt.Errorf("%w: version %d is not denied on channel %d (denied: %v)", ErrState, v, r.Channel, r.Deny)
	}
	r.Deny = slices.Delete(slices.Clone(r.Deny), i, i+1)
	return r.decide(now, KindAllow, actor, fmt.Sprintf("version %d allowed again: %s", v, why), r.evidence("")), nil
}

package controller

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/ringfence/ringfence/compat"
	"github.com/ringfence/ringfence/gate"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/slo"
)

// State is a rollout's state.
type State string

// States of a rollout.
const (
	StateRunning    State = "running"
	StatePaused     State = "paused"
	StateHalted     State = "halted"
	StateRolledBack State = "rolled-back"
	StateCompleted  State = "completed"
)

func (s State) String() string { return string(s) }

// Kind is a decision's kind.
type Kind string

// Kinds of decision.
const (
	KindStart    Kind = "start"
	KindAdvance  Kind = "advance"
	KindWait     Kind = "wait"
	KindHalt     Kind = "halt"
	KindRollback Kind = "rollback"
	KindPause    Kind = "pause"
	KindResume   Kind = "resume"
	KindPromote  Kind = "promote"
	KindComplete Kind = "complete"
	// KindAllow takes a version off the channel's deny list (an operator's
	// decision, recorded with who and why).
	KindAllow Kind = "allow"
	// KindWave exposes the rest of a stage after its first wave passed
	// its load (StageSpec.Wave).
	KindWave Kind = "wave"
)

func (k Kind) String() string { return string(k) }

// Actions are the kinds an operator may ask for through Act.
var Actions = []Kind{KindPause, KindResume, KindHalt, KindRollback, KindPromote}

// Schedules: the emergency one bakes each stage a sixth as long, with the
// same gates.
const (
	ScheduleStandard  = "standard"
	ScheduleEmergency = "emergency"
)

// Bounds of what a rollout keeps.
const (
	MaxDecisions = 1000
	MaxHistory   = 720
	MaxStages    = 32
)

// StageSpec is one ring of a rollout: who is in it, how long it bakes and
// how many of its hosts must report healthy before the next one starts.
// Stages are nested: a host in stage k is in every later stage.
type StageSpec struct {
	Name     string        `json:"name"`
	Percent  float64       `json:"percent"`
	Hosts    []string      `json:"hosts,omitempty"`
	Tags     []string      `json:"tags,omitempty"`
	Bake     time.Duration `json:"bake"`
	MinHosts int           `json:"min_hosts"`
	// Wave, for a stage that names hosts (Hosts, Tags), exposes only the
	// first Wave of them (in the order of their buckets) until at least
	// half of those passed their load (reported their trial started); then
	// the rest. Content that crashes hosts on load stops at a handful.
	Wave int `json:"wave,omitempty"`
	// MinEvidence holds the stage past its bake until the gate has seen
	// this many expected treated failures (gate.State.Expected, what a
	// no-worse version would have shown), up to MaxBake: a regression of
	// ratio rho shows about rho times as many, so the next, larger ring
	// starts only once the gate could have seen one. Promotion by the
	// evidence ends a stage regardless.
	MinEvidence float64       `json:"min_evidence,omitempty"`
	MaxBake     time.Duration `json:"max_bake,omitempty"`
}

// DefaultWave is the default plan's first wave in its canary stage.
const DefaultWave = 10

// DefaultMinEvidence is the default plan's evidence before it leaves the
// 0.1% stage (a 10x regression would have shown about 15 failures) and
// the 1% stage (a 3x one about 24): docs/gate.md.
var DefaultMinEvidence = [2]float64{3, 14}

// DefaultStages is the default plan: the canary group (hosts and tags),
// its first wave of DefaultWave hosts, then 0.1%, 0.8%, 8%, 50% and 100% of
// buckets. The 0.8% and 8% stages, the last below 1% and 10% of the fleet,
// wait past their bake for the evidence that would show a 10x and a 3x
// regression (DefaultMinEvidence). The emergency schedule bakes a sixth as
// long and waits for half the evidence; the gates are the same.
func DefaultStages(schedule string, canaryHosts, canaryTags []string) []StageSpec {
	s := []StageSpec{
		{Name: "canary", Hosts: canaryHosts, Tags: canaryTags, Bake: 30 * time.Minute, MinHosts: 5},
		{Name: "0.1%", Percent: 0.1, Bake: time.Hour, MinHosts: 10},
		{Name: "0.8%", Percent: 0.8, Bake: time.Hour, MinHosts: 50, MinEvidence: DefaultMinEvidence[0], MaxBake: 4 * time.Hour},
		{Name: "8%", Percent: 8, Bake: 2 * time.Hour, MinHosts: 200, MinEvidence: DefaultMinEvidence[1], MaxBake: 4 * time.Hour},
		{Name: "50%", Percent: 50, Bake: 3 * time.Hour, MinHosts: 500},
		{Name: "100%", Percent: 100, Bake: 0, MinHosts: 500},
	}
	if len(canaryHosts) > 0 || len(canaryTags) > 0 {
		s[0].Wave = DefaultWave
	}
	if schedule == ScheduleEmergency {
		for i := range s {
			s[i].Bake /= 6
			s[i].MaxBake /= 6
			s[i].MinEvidence /= 2
		}
	}
	return s
}

// Spec is what an operator asks for when starting a rollout.
type Spec struct {
	Channel uint32 `json:"channel"`
	// To is the new version; From the version hosts run now (the rollback
	// target). From 0 means the channel has no good version yet: hosts
	// outside the stages get nothing, and a rollback sends them nothing.
	To       uint32      `json:"to_version"`
	From     uint32      `json:"from_version"`
	Schedule string      `json:"schedule"`
	Stages   []StageSpec `json:"stages"`
	// HealthWindow is the hosts' health window; a treated host heard from
	// that has not reported healthy HealthWindow+Grace after it installed
	// is failing its trial. Silence is how long any host may go unheard
	// before it counts as failed, on either side: no data is never good.
	HealthWindow time.Duration `json:"health_window"`
	Grace        time.Duration `json:"grace"`
	Silence      time.Duration `json:"silence"`
	Gate         gate.Params   `json:"gate"`
	// Promote is the promotion test: a stage advances before its bake
	// time once the evidence shows the new version is not worse than the
	// controls by more than Promote.Margin, on every test (docs/gate.md).
	Promote gate.Promotion `json:"promote"`
	// ManualRollback keeps a halted rollout halted (the plan frozen where it
	// stopped) instead of rolling back by itself.
	ManualRollback bool `json:"manual_rollback,omitempty"`
	// Compat is To's compatibility constraint as the content role signed
	// it (the server reads it from the repository). A host whose sensor it
	// does not allow is in none of the rollout's stages and on neither
	// side of its gate: it keeps From, and the plan's stages say so.
	Compat compat.Constraint `json:"compat,omitzero"`
	// SLO are external checks (PromQL against the server's Prometheus),
	// evaluated with the gate: a breach halts the rollout.
	SLO []slo.Check `json:"slo,omitempty"`
}

// Defaults of a Spec.
const (
	DefaultHealthWindow = 10 * time.Minute
	DefaultGrace        = 10 * time.Minute
	DefaultSilence      = 30 * time.Minute
)

// withDefaults fills what the operator left out and checks the rest.
func (s Spec) withDefaults(canaryHosts, canaryTags []string) (Spec, error) {
	if s.Channel == 0 || s.To == 0 {
		return s, errors.New("controller: a rollout needs a channel and a version")
	}
	if s.To == s.From {
		return s, fmt.Errorf("controller: version %d is already what the channel runs", s.To)
	}
	switch s.Schedule {
	case "":
		s.Schedule = ScheduleStandard
	case ScheduleStandard, ScheduleEmergency:
	default:
		return s, fmt.Errorf("controller: schedule %q; use %q or %q", s.Schedule, ScheduleStandard, ScheduleEmergency)
	}
	if len(s.Stages) == 0 {
		s.Stages = DefaultStages(s.Schedule, canaryHosts, canaryTags)
	}
	if len(s.Stages) > MaxStages {
		return s, fmt.Errorf("controller: %d stages; the limit is %d", len(s.Stages), MaxStages)
	}
	last := -1.0
	for i, st := range s.Stages {
		if !(st.Percent >= 0 && st.Percent <= 100) || st.Bake < 0 || st.MinHosts < 0 || !(st.MinEvidence >= 0) || st.MaxBake < 0 {
			return s, fmt.Errorf("controller: stage %d (%s): percent must be 0..100; bake, max bake, min hosts and min evidence not negative", i+1, st.Name)
		}
		if st.MinEvidence > 0 && st.MaxBake < st.Bake {
			return s, fmt.Errorf("controller: stage %d (%s): min evidence %g needs a max bake at least the bake (%v): how long the stage may wait for the evidence", i+1, st.Name, st.MinEvidence, st.Bake)
		}
		if st.Wave < 0 || st.Wave > 0 && len(st.Hosts) == 0 && len(st.Tags) == 0 {
			return s, fmt.Errorf("controller: stage %d (%s): wave %d; a first wave is for a stage that names hosts or tags, and not negative", i+1, st.Name, st.Wave)
		}
		if st.Percent < last {
			return s, fmt.Errorf("controller: stage %d (%s) has %g%%, less than the stage before it: stages are nested rings", i+1, st.Name, st.Percent)
		}
		last = st.Percent
	}
	if s.Stages[len(s.Stages)-1].Percent != 100 {
		return s, errors.New("controller: the last stage must be 100%: a rollout ends with the whole fleet")
	}
	if s.HealthWindow <= 0 {
		s.HealthWindow = DefaultHealthWindow
	}
	if s.Grace <= 0 {
		s.Grace = DefaultGrace
	}
	if s.Silence <= 0 {
		s.Silence = DefaultSilence
	}
	if s.Gate.Alpha == 0 && len(s.Gate.Ratios) == 0 {
		s.Gate = gate.Default()
	}
	if err := s.Gate.Check(); err != nil {
		return s, err
	}
	if s.Promote.Margin == 0 && s.Promote.Beta == 0 {
		s.Promote.Margin, s.Promote.Beta = gate.DefaultPromotion().Margin, gate.DefaultPromotion().Beta
	}
	if err := s.Promote.Check(); err != nil {
		return s, err
	}
	if err := slo.Validate(s.SLO); err != nil {
		return s, err
	}
	return s, nil
}

// Rollout is one channel's rollout and everything it decided. It is what
// the server persists and the API shows.
type Rollout struct {
	Spec
	State        State     `json:"state"`
	Stage        int       `json:"stage"`
	Started      time.Time `json:"started"`
	StageStarted time.Time `json:"stage_started"`
	Updated      time.Time `json:"updated"`
	// Deny is the channel's deny list: versions rolled back, which the plan
	// forbids every host to install. It outlives the rollout.
	Deny []uint32 `json:"deny,omitempty"`

	// Counts is the gate's view at the last evaluation. The gate runs
	// three tests, each at a third of the rollout's alpha: GateState on
	// what hosts report (reverts, crashes, rejections, failing trials),
	// SilenceState on silence, which churn makes noisy (apart, a crash
	// regression is not drowned by hosts that merely went offline), and
	// HealthState on the agents' health figures against the controls'.
	// Result is the test with the larger statistic.
	Counts       Counts      `json:"counts"`
	GateState    gate.State  `json:"gate_state"`
	SilenceState gate.State  `json:"silence_state"`
	HealthState  gate.State  `json:"health_state"`
	Result       gate.Result `json:"result"`
	// SilenceResult and HealthResult are those tests' own results.
	SilenceResult gate.Result `json:"silence_result"`
	HealthResult  gate.Result `json:"health_result"`
	// FirstWave: the current stage exposes only its first wave (StageSpec.Wave).
	FirstWave bool `json:"first_wave,omitempty"`
	// HealthLimits are the health test's limits, drawn from the controls
	// at the last evaluation (nil before any control sent a sample).
	HealthLimits *HealthLimits `json:"health_limits,omitempty"`
	History      []Point       `json:"history"`
	Decisions    []Decision    `json:"decisions"`
	Seq          uint64        `json:"seq"`
	// waiting is the reason of the last wait decision, so a wait is
	// recorded once per reason, not once per evaluation.
	Waiting string `json:"waiting,omitempty"`
}

// Counts are a rollout's hosts as the gate sees them.
type Counts struct {
	// Treated are the hosts that took the new version during the rollout,
	// Control those heard from on another version; each is the hosts still
	// at risk plus the failed ones.
	Treated         int64 `json:"treated"`
	Control         int64 `json:"control"`
	TreatedFailures int64 `json:"treated_failures"` // since the rollout started, silence included
	ControlFailures int64 `json:"control_failures"`
	TreatedSilent   int64 `json:"treated_silent"` // of the failures, silence
	ControlSilent   int64 `json:"control_silent"`
	TreatedAtRisk   int64 `json:"treated_at_risk"` // not failed: what the gate weighs
	ControlAtRisk   int64 `json:"control_at_risk"`
	Healthy         int64 `json:"healthy"`     // treated hosts in the current stage that reported healthy
	StageHosts      int64 `json:"stage_hosts"` // known hosts the current stage includes
	// OffPlan counts hosts that run the new version although the signed
	// plan did not give it to their stage (a local pin, a forged claim):
	// they count on neither side.
	OffPlan int64 `json:"off_plan"`
	// Excluded counts hosts on the channel whose sensor the new version's
	// constraint does not allow (Spec.Compat): outside the rollout.
	Excluded int64 `json:"excluded,omitempty"`
	// The health test: treated hosts judged (once each, at the end of
	// their health window) and found unhealthy, since the start; HealthP0
	// is the bound on a healthy host's chance of being found unhealthy,
	// from the controls now (ControlSampled of them with a health sample,
	// ControlUnhealthy beyond the thresholds).
	TreatedJudged    int64   `json:"treated_judged,omitempty"`
	TreatedUnhealthy int64   `json:"treated_unhealthy,omitempty"`
	HealthP0         float64 `json:"health_p0,omitempty"`
	ControlSampled   int64   `json:"control_sampled,omitempty"`
	ControlUnhealthy int64   `json:"control_unhealthy,omitempty"`
	// WaveLoaded counts the hosts of the current stage's first wave that
	// passed their load (reported their trial started), while it waits.
	WaveLoaded int64 `json:"wave_loaded,omitempty"`
	WaveHosts  int64 `json:"wave_hosts,omitempty"` // the first wave's hosts heard from

}

// Point is one point of the gate's statistic over time.
type Point struct {
	Time      time.Time `json:"time"`
	Statistic float64   `json:"statistic"`
	Threshold float64   `json:"threshold"`
	Stage     int       `json:"stage"`
}

// Decision is one decision with its evidence.
type Decision struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Kind     Kind      `json:"kind"`
	Stage    int       `json:"stage"`
	Actor    string    `json:"actor"`
	Reason   string    `json:"reason"`
	Evidence Evidence  `json:"evidence"`
}

// Evidence is what a decision was made on.
type Evidence struct {
	Statistic float64 `json:"statistic"`
	Threshold float64 `json:"threshold"`
	Alpha     float64 `json:"alpha"`
	Counts
	Host string `json:"host,omitempty"`
}

// Active reports whether the rollout still exposes new hosts or may
// (running or paused) or is frozen by a halt.
func (r *Rollout) Active() bool {
	return r.State == StateRunning || r.State == StatePaused || r.State == StateHalted
}

// Plan is the rollout plan the rollout role signs for the rollout's state:
// while it runs (or is paused or halted), the stages up to the current one
// get the new version and every other host the old one; rolled back,
// every host gets the old version and the new one is denied; completed,
// every host gets the new one. A rollout from no content (From 0) gives
// hosts outside its stages nothing, and rolled back it gives nobody
// anything: a plan without stages, which hosts read as "run no content".
// The stages that give the new version carry its compatibility constraint
// (Spec.Compat), so hosts of other sensors fall through to the old one,
// completed or not.
//
// named[i] are the hosts stage i names, resolved by the server from its
// own records (Controller.Plan): the signed plan lists host ids, never
// tags, so a host's own claim of a tag puts it in no stage. nil names the
// spec's hosts only.
func (r *Rollout) Plan(named [][]string) *rollout.Plan {
	p := &rollout.Plan{Format: rollout.Format, Channel: r.Channel, Deny: append([]uint32(nil), r.Deny...), Stages: []rollout.Stage{}}
	all := func(v uint32) []rollout.Stage { return []rollout.Stage{{Name: "fleet", Percent: 100, Version: v}} }
	sensors := slices.Clone(r.Compat.Sensors)
	switch r.State {
	case StateCompleted:
		p.Stages = all(r.To)
		if !r.Compat.Any() {
			p.Stages[0].Sensors = sensors
			if r.From != 0 {
				p.Stages = append(p.Stages, rollout.Stage{Name: "other sensors", Percent: 100, Version: r.From})
			}
		}
	case StateRolledBack:
		if r.From != 0 {
			p.Stages = all(r.From)
		}
	default:
		for i := 0; i <= r.Stage && i < len(r.Stages); i++ {
			s := r.Stages[i]
			hosts := s.Hosts
			if named != nil {
				hosts = named[i]
			}
			p.Stages = append(p.Stages, rollout.Stage{Name: s.Name, Percent: s.Percent, Hosts: hosts, Version: r.To, Sensors: sensors})
		}
		if r.From != 0 {
			p.Stages = append(p.Stages, all(r.From)...)
		}
	}
	return p
}

// clone is a deep copy of r: the before-image the controller puts back
// when a change cannot be committed.
func (r *Rollout) clone() Rollout {
	c := *r
	c.Stages = slices.Clone(r.Stages)
	for i := range c.Stages {
		c.Stages[i].Hosts = slices.Clone(c.Stages[i].Hosts)
		c.Stages[i].Tags = slices.Clone(c.Stages[i].Tags)
	}
	c.Compat.Sensors, c.Compat.Excluded = slices.Clone(r.Compat.Sensors), maps.Clone(r.Compat.Excluded)
	c.Gate.Ratios = slices.Clone(r.Gate.Ratios)
	c.Deny = slices.Clone(r.Deny)
	c.GateState.LogLR = slices.Clone(r.GateState.LogLR)
	c.SilenceState.LogLR = slices.Clone(r.SilenceState.LogLR)
	c.HealthState.LogLR = slices.Clone(r.HealthState.LogLR)
	c.History = slices.Clone(r.History)
	if r.HealthLimits != nil {
		l := *r.HealthLimits
		c.HealthLimits = &l
	}
	c.Decisions = slices.Clone(r.Decisions)
	return c
}

// decide records a decision (bounded: the oldest waits go first).
func (r *Rollout) decide(now time.Time, kind Kind, actor, reason string, ev Evidence) Decision {
	r.Seq++
	d := Decision{Seq: r.Seq, Time: now, Kind: kind, Stage: r.Stage, Actor: actor, Reason: reason, Evidence: ev}
	if len(r.Decisions) >= MaxDecisions {
		drop := 0
		for i, old := range r.Decisions {
			if old.Kind == KindWait {
				drop = i
				break
			}
		}
		r.Decisions = append(r.Decisions[:drop], r.Decisions[drop+1:]...)
	}
	r.Decisions = append(r.Decisions, d)
	r.Updated = now
	if kind != KindWait {
		r.Waiting = ""
	}
	return d
}

func (r *Rollout) evidence(host string) Evidence {
	return Evidence{Statistic: Finite(r.Result.Statistic), Threshold: r.Result.Threshold, Alpha: r.Gate.Alpha, Counts: r.Counts, Host: host}
}

// Finite keeps JSON encodable: the statistic can be +Inf after a failure
// that was impossible under the null (every host treated, q clamped).
func Finite(x float64) float64 {
	switch {
	case math.IsInf(x, 1):
		return math.MaxFloat64
	case math.IsInf(x, -1):
		return -math.MaxFloat64
	case math.IsNaN(x):
		return 0
	}
	return x
}

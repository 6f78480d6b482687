package controller_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/gate"
	"github.com/ringfence/ringfence/wire"
)

// healthRun is a fleet whose hosts send a health sample with every batch:
// host i burns cpu(i) cores on the old version and cost times that on the
// new one. Each step every host reports; hosts the plan sends to the new
// version install it, start their trial and, a health window later,
// report healthy.
type healthRun struct {
	*fleet
	r         *controller.Rollout
	cost      float64
	installed map[string]time.Time
}

func cpu(i int) float64 { return 0.01 * (1 + float64(i%37)/37) }

func (h *healthRun) step(t *testing.T, d time.Duration) []controller.Decision {
	t.Helper()
	h.now = h.now.Add(d)
	p := h.c.Plan(291)
	var out []controller.Decision
	for i, id := range h.ids {
		sample := &wire.Health{Seconds: 60, CPU: cpu(i), RSS: 100 << 20, Events: 6000, LatencyMicros: 40}
		running := h.from
		var evs []controller.Event
		if planSends(p, id, h.r.To) {
			running = h.r.To
			sample.CPU *= h.cost
			at, ok := h.installed[id]
			if !ok {
				h.installed[id] = h.now
				at = h.now
				evs = append(evs, ev(wire.EventInstalled, h.r.To, ""), ev(wire.EventTrialStarted, h.r.To, ""))
			}
			if h.now.Sub(at) >= h.r.HealthWindow && h.now.Sub(at) < h.r.HealthWindow+d {
				evs = append(evs, ev(wire.EventHealthy, h.r.To, ""))
			}
		}
		evs = append([]controller.Event{{Kind: wire.EventHeartbeat, Channel: 291, Version: running}}, evs...)
		for k := range evs {
			h.seq++
			evs[k].Seq = h.seq
		}
		res, err := h.c.Ingest(controller.Report{HostID: id, Versions: map[uint32]uint32{291: running}, Health: sample, Events: evs}, h.now)
		require.NoError(t, err)
		out = append(out, res.Decisions...)
	}
	return append(out, h.c.Evaluate(h.now)...)
}

func newHealthRun(t *testing.T, cost float64, stages func(f *fleet) []controller.StageSpec) *healthRun {
	f := newFleet(t, 1000, 30, 1001)
	_, err := f.c.Start(controller.Spec{Channel: 291, To: 1002, Stages: stages(f), HealthWindow: 5 * time.Minute, Grace: 5 * time.Minute, Silence: 20 * time.Minute},
		"alice", "", f.now)
	require.NoError(t, err)
	r, _ := f.c.Rollout(291)
	return &healthRun{fleet: f, r: r, cost: cost, installed: map[string]time.Time{}}
}

// TestHealthTestHaltsOnCPU: content that makes the agent burn four times
// its CPU and crashes nothing is halted on the health figures alone, in
// the canary stage; the same fleet with content that costs nothing more
// is judged healthy and goes on.
func TestHealthTestHaltsOnCPU(t *testing.T) {
	canaryOnly := func(f *fleet) []controller.StageSpec {
		return []controller.StageSpec{{Name: "canary", Hosts: f.canon, Bake: 2 * time.Hour, MinHosts: 3}, {Name: "100%", Percent: 100}}
	}
	h := newHealthRun(t, 4, canaryOnly)
	var all []string
	for range 20 {
		all = append(all, kinds(h.step(t, time.Minute))...)
		if h.r.State != controller.StateRunning {
			break
		}
	}
	require.Equal(t, controller.StateRolledBack, h.r.State, "decisions: %v", all)
	halt := h.r.Decisions[len(h.r.Decisions)-2]
	require.Equal(t, controller.KindHalt, halt.Kind)
	require.Contains(t, halt.Reason, "the agents' health")
	require.Zero(t, halt.Evidence.TreatedFailures, "nothing crashed")
	require.Positive(t, halt.Evidence.TreatedUnhealthy)
	require.Positive(t, halt.Evidence.HealthP0)
	require.Less(t, halt.Evidence.HealthP0, 0.01, "the controls are rarely beyond the limits")
	require.NotNil(t, h.r.HealthLimits)
	require.Greater(t, h.r.HealthLimits.CPU, cpu(36), "the limit stands above every control")
	host, _ := h.c.Host(h.canon[0])
	require.Equal(t, "cpu", host.Tracks[0].Unhealthy, "the host's track names the figure")
	require.False(t, host.Tracks[0].Judged.IsZero())

	h = newHealthRun(t, 1, canaryOnly)
	for range 20 {
		h.step(t, time.Minute)
	}
	require.Equal(t, controller.StateRunning, h.r.State)
	require.Equal(t, int64(30), h.r.Counts.TreatedJudged, "every canary judged, once")
	require.Zero(t, h.r.Counts.TreatedUnhealthy)
	require.Less(t, h.r.HealthResult.Statistic, 0.0, "the evidence favours the new version")
}

// TestFirstWave: a stage with a first wave sends the new version to a
// few of its hosts, the rest once half of those passed their load; a
// crash on load in the first wave halts with only the wave exposed.
func TestFirstWave(t *testing.T) {
	waves := func(f *fleet) []controller.StageSpec {
		return []controller.StageSpec{{Name: "canary", Hosts: f.canon, Bake: 10 * time.Minute, MinHosts: 3, Wave: 4}, {Name: "100%", Percent: 100}}
	}
	h := newHealthRun(t, 1, waves)
	require.True(t, h.r.FirstWave)
	given := func() []string {
		var out []string
		p := h.c.Plan(291)
		for _, id := range h.ids {
			if planSends(p, id, 1002) {
				out = append(out, id)
			}
		}
		return out
	}
	first := given()
	require.Len(t, first, 4, "the first wave only")
	for _, id := range first {
		require.Contains(t, h.canon, id)
	}
	ds := h.step(t, time.Minute)
	require.Contains(t, kinds(ds), "wave", "four loaded: the rest of the stage")
	require.False(t, h.r.FirstWave)
	require.Len(t, given(), 30)
	require.Equal(t, []uint32{291}, h.c.TakeChanges().Plans, "the wider plan is signed")

	// A crash on load in the first wave.
	f := newFleet(t, 1000, 30, 1001)
	_, err := f.c.Start(controller.Spec{Channel: 291, To: 1002, Stages: waves(f)}, "alice", "", f.now)
	require.NoError(t, err)
	r, _ := f.c.Rollout(291)
	var wave []string
	for _, id := range f.ids {
		if planSends(f.c.Plan(291), id, 1002) {
			wave = append(wave, id)
		}
	}
	require.Len(t, wave, 4)
	f.now = f.now.Add(2 * time.Minute)
	ds = f.report(wave[0], 1001, ev(wire.EventInstalled, 1002, ""), ev(wire.EventReverted, 1002, "load-crash"))
	require.Equal(t, []string{"halt", "rollback"}, kinds(ds))
	require.Equal(t, controller.StateRolledBack, r.State)

	_, err = f.c.Start(controller.Spec{Channel: 291, To: 1003, Stages: []controller.StageSpec{{Name: "1%", Percent: 1, Wave: 3}, {Name: "all", Percent: 100}}}, "alice", "", f.now)
	require.ErrorContains(t, err, "a first wave is for a stage that names hosts")
}

// observeRun is a rollout driven by counts, as the fleet simulator drives
// it: the controls fail at a steady rate, treated hosts rho times as often.
func observeRun(t *testing.T, st []controller.StageSpec, promote gate.Promotion, rho float64, minutes int) (*controller.Rollout, []controller.Decision) {
	t.Helper()
	r, _, err := controller.NewRollout(controller.Spec{Channel: 291, To: 2, From: 1, Stages: st, Promote: promote}, nil, nil, nil, "t", "", t0)
	require.NoError(t, err)
	var cnt controller.Counts
	var out []controller.Decision
	var owed [2]float64
	for m := 1; m <= minutes && r.State == controller.StateRunning; m++ {
		now := t0.Add(time.Duration(m) * time.Minute)
		pct := st[r.Stage].Percent / 100
		treated := int64(100_000 * pct)
		cnt.TreatedAtRisk, cnt.ControlAtRisk = treated, 100_000-treated
		cnt.Treated, cnt.Control = cnt.TreatedAtRisk+cnt.TreatedFailures, cnt.ControlAtRisk+cnt.ControlFailures
		cnt.StageHosts, cnt.Healthy = treated, treated
		// Failures as whole numbers of the expected ones: 1 per host-day
		// for controls (about 70 a minute), rho times that for the treated;
		// the same for silence.
		owed[0] += float64(treated) * rho / 1440
		owed[1] += float64(100_000-treated) / 1440
		x, y := int64(owed[0]), int64(owed[1])
		owed[0] -= float64(x)
		owed[1] -= float64(y)
		cnt.TreatedFailures += 2 * x
		cnt.TreatedSilent += x
		cnt.ControlFailures += 2 * y
		cnt.ControlSilent += y
		r.Observe(cnt, now)
		out = append(out, r.Step(now)...)
	}
	return r, out
}

// TestPromotionAndEvidence: a stage ends before its bake once the evidence
// shows the new version no worse; content twice as bad waits out its
// bake, and a stage with MinEvidence waits past it for the evidence, up to
// its max bake.
func TestPromotionAndEvidence(t *testing.T) {
	st := []controller.StageSpec{
		{Name: "5%", Percent: 5, Bake: 3 * time.Hour, MinHosts: 1},
		{Name: "all", Percent: 100},
	}
	r, ds := observeRun(t, st, gate.Promotion{}, 1, 180)
	require.Equal(t, controller.StateCompleted, r.State)
	var adv controller.Decision
	for _, d := range ds {
		if d.Kind == controller.KindAdvance {
			adv = d
		}
	}
	require.Contains(t, adv.Reason, "promoted after", "ended on the evidence: %s", adv.Reason)
	require.Less(t, adv.Time.Sub(t0), 3*time.Hour)

	r, ds = observeRun(t, st, gate.Promotion{}, 2, 170)
	require.NotContains(t, kinds(ds), "advance", "twice as bad is not promoted early")
	require.Equal(t, controller.StateRolledBack, r.State, "with this much evidence the gate halts it")
	r, ds = observeRun(t, st, gate.Promotion{Off: true}, 1, 170)
	require.Equal(t, controller.StateRunning, r.State, "promotion off: the bake decides: %v", kinds(ds))

	// Waiting for the evidence (promotion off, so only the evidence or the
	// max bake ends the stage).
	st[0].Bake, st[0].MinEvidence, st[0].MaxBake = 10*time.Minute, 1e6, 2*time.Hour
	r, ds = observeRun(t, st, gate.Promotion{Off: true}, 1, 119)
	require.Equal(t, controller.StateRunning, r.State, "not enough evidence: it waits: %v", kinds(ds))
	require.Contains(t, ds[len(ds)-1].Reason, "expected failures it needs")
	r, _ = observeRun(t, st, gate.Promotion{Off: true}, 1, 121)
	require.Equal(t, controller.StateCompleted, r.State, "after its max bake the stage ends anyway")
	st[0].MinEvidence = 5
	r, ds = observeRun(t, st, gate.Promotion{Off: true}, 1, 119)
	require.Equal(t, controller.StateCompleted, r.State, "the evidence came: %v", kinds(ds))
	require.Greater(t, r.GateState.Expected, 5.0)

	_, _, err := controller.NewRollout(controller.Spec{Channel: 291, To: 2, Stages: []controller.StageSpec{{Name: "a", Percent: 1, Bake: time.Hour, MinEvidence: 3}, {Name: "b", Percent: 100}}}, nil, nil, nil, "t", "", t0)
	require.ErrorContains(t, err, "needs a max bake")
	_, _, err = controller.NewRollout(controller.Spec{Channel: 291, To: 2, Promote: gate.Promotion{Margin: 0.5, Beta: 0.05}}, nil, nil, nil, "t", "", t0)
	require.ErrorContains(t, err, "promotion margin")
}

// TestDefaultPlan: the default plan's stages, its first wave and the
// evidence its 0.8% and 8% stages wait for; the emergency schedule waits
// for half.
func TestDefaultPlan(t *testing.T) {
	s := controller.DefaultStages(controller.ScheduleStandard, nil, []string{"canary"})
	var names []string
	for _, st := range s {
		names = append(names, st.Name)
	}
	require.Equal(t, []string{"canary", "0.1%", "0.8%", "8%", "50%", "100%"}, names)
	require.Equal(t, controller.DefaultWave, s[0].Wave)
	require.Equal(t, controller.DefaultMinEvidence[0], s[2].MinEvidence)
	e := controller.DefaultStages(controller.ScheduleEmergency, nil, []string{"canary"})
	require.Equal(t, s[3].MinEvidence/2, e[3].MinEvidence)
	require.Equal(t, s[3].Bake/6, e[3].Bake)
	require.Zero(t, controller.DefaultStages(controller.ScheduleStandard, nil, nil)[0].Wave, "no canary group, no wave")
}

// TestHealthTestNeedsContentToCompare: controls with no content on the
// channel (a first rollout) evaluate nothing there; their figures set no
// limits, and content that costs something is not found unhealthy for it.
func TestHealthTestNeedsContentToCompare(t *testing.T) {
	canaryOnly := func(f *fleet) []controller.StageSpec {
		return []controller.StageSpec{{Name: "canary", Hosts: f.canon, Bake: 2 * time.Hour, MinHosts: 3}, {Name: "100%", Percent: 100}}
	}
	h := newHealthRun(t, 4, canaryOnly)
	h.from = 0 // hosts say they run no content yet
	_, err := h.c.Action(291, controller.KindRollback, "t", "start over from no content", h.now)
	require.NoError(t, err)
	_, err = h.c.Start(controller.Spec{Channel: 291, To: 1003, Stages: canaryOnly(h.fleet), HealthWindow: 5 * time.Minute, Grace: 5 * time.Minute, Silence: 20 * time.Minute}, "alice", "", h.now)
	require.NoError(t, err)
	h.r, _ = h.c.Rollout(291)
	for range 20 {
		h.step(t, time.Minute)
	}
	require.Equal(t, controller.StateRunning, h.r.State, "no halt on health: %v", h.r.Decisions[len(h.r.Decisions)-1].Reason)
	require.Nil(t, h.r.HealthLimits, "no limits from hosts without content")
	require.Zero(t, h.r.Counts.TreatedJudged)
}

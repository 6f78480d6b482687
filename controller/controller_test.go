package controller_test

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/wire"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// fleet is n hosts on version from of channel 291; the first canaries of
// them are the canary group.
type fleet struct {
	seq   uint64 // the hosts' event sequence (one for all: it only has to grow)
	c     *controller.Controller
	ids   []string
	now   time.Time
	from  uint32
	canon []string
}

func newFleet(t *testing.T, n, canaries int, from uint32) *fleet {
	t.Helper()
	f := &fleet{c: controller.New(nil, nil), now: t0, from: from}
	for i := range n {
		id := fmt.Sprintf("h-%04d", i)
		f.ids = append(f.ids, id)
		if i < canaries {
			f.canon = append(f.canon, id)
		}
		_, err := f.c.Admit(id, controller.Admission{By: "test"}, f.now)
		require.NoError(t, err)
		f.report(id, from)
	}
	f.c.TakeChanges()
	return f
}

// report is one batch from host id: a heartbeat and evs, each with the
// next seq.
func (f *fleet) report(id string, running uint32, evs ...controller.Event) []controller.Decision {
	evs = append([]controller.Event{{Kind: wire.EventHeartbeat, Channel: 291, Version: running}}, evs...)
	for i := range evs {
		f.seq++
		evs[i].Seq = f.seq
	}
	res, err := f.c.Ingest(controller.Report{HostID: id, Versions: map[uint32]uint32{291: running}, Events: evs}, f.now)
	if err != nil {
		panic(err)
	}
	return res.Decisions
}

func ev(kind wire.EventKind, v uint32, reason string) controller.Event {
	return controller.Event{Kind: kind, Channel: 291, Version: v, Reason: reason}
}

// stages: canary group, 10%, 100%, each baking 10 minutes and needing 3
// healthy hosts.
func (f *fleet) stages() []controller.StageSpec {
	return []controller.StageSpec{
		{Name: "canary", Hosts: f.canon, Bake: 10 * time.Minute, MinHosts: 3},
		{Name: "10%", Percent: 10, Bake: 10 * time.Minute, MinHosts: 3},
		{Name: "100%", Percent: 100, Bake: 10 * time.Minute, MinHosts: 3},
	}
}

func (f *fleet) start(t *testing.T, to uint32) *controller.Rollout {
	t.Helper()
	_, err := f.c.Start(controller.Spec{Channel: 291, To: to, Stages: f.stages(), HealthWindow: 5 * time.Minute, Grace: 5 * time.Minute, Silence: 20 * time.Minute},
		"alice", "", f.now)
	require.NoError(t, err)
	r, ok := f.c.Rollout(291)
	require.True(t, ok)
	return r
}

// planSends reports whether the signed plan sends host id to version v.
func planSends(p *rollout.Plan, id string, v uint32) bool {
	i := p.StageFor(rollout.Host{ID: id})
	return i >= 0 && p.Stages[i].Version == v && !p.Denied(v)
}

// step moves time on by d; every host the plan sends to the new version
// installs it (once) and, healthy, reports healthy; then the gate runs.
func (f *fleet) step(t *testing.T, r *controller.Rollout, d time.Duration, healthy func(id string) bool) []controller.Decision {
	t.Helper()
	f.now = f.now.Add(d)
	p := f.c.Plan(291)
	for _, id := range f.ids {
		if planSends(p, id, r.To) {
			if healthy(id) {
				f.report(id, r.To, ev(wire.EventInstalled, r.To, ""), ev(wire.EventHealthy, r.To, ""))
			} else {
				f.report(id, f.from, ev(wire.EventInstalled, r.To, ""), ev(wire.EventReverted, r.To, "load-crash"))
			}
			continue
		}
		f.report(id, f.from)
	}
	return f.c.Evaluate(f.now)
}

func kinds(ds []controller.Decision) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Kind.String())
	}
	return out
}

func TestHealthyRolloutCompletes(t *testing.T) {
	f := newFleet(t, 200, 5, 1001)
	r := f.start(t, 1002)
	p := f.c.Plan(291)
	require.True(t, planSends(p, f.canon[0], 1002), "the canary group gets the new version")
	require.True(t, planSends(p, f.ids[199], 1001) || rollout.Bucket(f.ids[199]) < 0, "everyone else keeps the old one")
	ch := f.c.TakeChanges()
	require.Equal(t, []uint32{291}, ch.Plans, "the first stage's plan must be signed")

	var all []string
	for range 20 {
		all = append(all, kinds(f.step(t, r, 4*time.Minute, func(string) bool { return true }))...)
		if r.State == controller.StateCompleted {
			break
		}
	}
	require.Equal(t, controller.StateCompleted, r.State, "decisions: %v", all)
	require.Equal(t, []string{"wait", "advance", "wait", "advance", "wait", "complete"}, all,
		"one wait per stage (the bake), then an advance; never a halt")
	require.Equal(t, []rollout.Stage{{Name: "fleet", Percent: 100, Version: 1002}}, f.c.Plan(291).Stages)
	require.Zero(t, r.Counts.TreatedFailures)
	require.Less(t, r.Result.Statistic, r.Result.Threshold)
	require.Equal(t, uint32(1002), f.c.Current(291), "a completed rollout makes its version the channel's")
}

func TestCanaryRevertHaltsAndRollsBack(t *testing.T) {
	f := newFleet(t, 200, 5, 1001)
	r := f.start(t, 1002)
	f.c.TakeChanges()

	f.now = f.now.Add(time.Minute)
	ds := f.report(f.canon[2], 1001, ev(wire.EventInstalled, 1002, ""), ev(wire.EventReverted, 1002, "load-crash"),
		ev(wire.EventQuarantined, 1002, "load-crash"))
	require.Equal(t, []string{"halt", "rollback"}, kinds(ds), "one crash-on-load in the canary group halts at once, without waiting for the gate, and once")
	require.Empty(t, f.report(f.canon[3], 1001, ev(wire.EventReverted, 1002, "load-crash")), "a rolled-back rollout does not halt again")
	require.Contains(t, ds[0].Reason, "load-crash")
	require.Equal(t, f.canon[2], ds[0].Evidence.Host)
	require.Equal(t, int64(1), ds[0].Evidence.TreatedFailures)
	require.Equal(t, int64(1), ds[0].Evidence.Treated, "the evidence is measured at the halt")
	require.Equal(t, int64(199), ds[0].Evidence.Control)
	require.Equal(t, controller.StateRolledBack, r.State)

	p := f.c.Plan(291)
	require.Equal(t, []uint32{1002}, p.Deny)
	for _, id := range f.ids {
		require.True(t, planSends(p, id, 1001), "%s goes back to 1001", id)
	}
	require.Equal(t, []uint32{291}, f.c.TakeChanges().Plans, "the rollback plan must be signed")

	// The denied version never starts again; a new one does, from 1001.
	_, err := f.c.Start(controller.Spec{Channel: 291, To: 1002}, "alice", "", f.now)
	require.ErrorIs(t, err, controller.ErrState)
	_, err = f.c.Start(controller.Spec{Channel: 291, To: 1003, Stages: f.stages()}, "alice", "", f.now)
	require.NoError(t, err)
	r, _ = f.c.Rollout(291)
	require.Equal(t, uint32(1001), r.From)
	require.Equal(t, []uint32{1002}, f.c.Plan(291).Deny, "the deny list outlives the rollout")
}

func TestGateHaltsOnFailuresOutsideTheCanaryGroup(t *testing.T) {
	f := newFleet(t, 2000, 5, 1001)
	r := f.start(t, 1002)
	// The canary group is healthy; in the 10% stage one host in five
	// crashes on load (content that trips on an event only some hosts see).
	canary := map[string]bool{}
	for _, id := range f.canon {
		canary[id] = true
	}
	healthy := func(id string) bool { return canary[id] || rollout.Bucket(id)%5 != 0 }
	var all []string
	for range 10 {
		ds := f.step(t, r, 4*time.Minute, healthy)
		all = append(all, kinds(ds)...)
		if r.State != controller.StateRunning {
			break
		}
	}
	require.Equal(t, controller.StateRolledBack, r.State, "decisions: %v", all)
	last := r.Decisions[len(r.Decisions)-2]
	require.Equal(t, controller.KindHalt, last.Kind)
	require.Equal(t, "gate", last.Actor)
	require.Contains(t, last.Reason, "the gate rejected version 1002")
	require.GreaterOrEqual(t, last.Evidence.Statistic, last.Evidence.Threshold)
	require.Positive(t, last.Evidence.TreatedFailures)
	require.Equal(t, 1, last.Stage, "halted in the 10% stage, before 100%")
}

func TestSilenceIsFailure(t *testing.T) {
	f := newFleet(t, 40, 5, 1001)
	r := f.start(t, 1002)
	// A canary installs and is never heard from again: no healthy report by
	// the health window plus grace makes it a treated failure. A control
	// host goes quiet for longer than the silence window: a control
	// failure. Everyone else keeps reporting.
	quietTreated, quietControl := f.canon[0], f.ids[30]
	f.now = f.now.Add(time.Minute)
	f.report(quietTreated, 1002, ev(wire.EventInstalled, 1002, ""))
	for i := range 6 {
		f.now = f.now.Add(5 * time.Minute)
		for _, id := range f.ids {
			if id == quietTreated || id == quietControl && i > 0 {
				continue
			}
			f.report(id, 1001)
		}
		f.c.Evaluate(f.now)
	}
	require.Equal(t, int64(1), r.Counts.TreatedFailures, "the silent treated host")
	require.Equal(t, int64(1), r.Counts.ControlFailures, "the silent control host")
	require.Equal(t, int64(0), r.Counts.TreatedAtRisk, "a failed host is no longer at risk")
	require.Equal(t, int64(1), r.Counts.Treated)
	require.Equal(t, int64(38), r.Counts.ControlAtRisk)
	require.Equal(t, int64(39), r.Counts.Control)
}

func TestActions(t *testing.T) {
	f := newFleet(t, 50, 5, 1001)
	now := f.now
	_, err := f.c.Action(291, controller.KindPause, "bob", "why not", now)
	require.ErrorIs(t, err, controller.ErrNotFound)
	r := f.start(t, 1002)

	steps := []struct {
		action controller.Kind
		why    string
		err    error
		state  controller.State
		stage  int
	}{
		{"resume", "x", controller.ErrState, controller.StateRunning, 0},
		{"pause", "", nil, controller.StateRunning, 0}, // why is required
		{"pause", "investigating a ticket", nil, controller.StatePaused, 0},
		{"promote", "the ticket was unrelated", nil, controller.StatePaused, 1},
		{"resume", "carry on", nil, controller.StateRunning, 1},
		{"halt", "freeze for the weekend", nil, controller.StateHalted, 1},
		{"promote", "no", controller.ErrState, controller.StateHalted, 1},
		{"resume", "monday", nil, controller.StateRunning, 1},
		{"rollback", "customer report", nil, controller.StateRolledBack, 1},
		{"resume", "no", controller.ErrState, controller.StateRolledBack, 1},
		{"dance", "no", nil, controller.StateRolledBack, 1},
	}
	for _, s := range steps {
		d, err := f.c.Action(291, s.action, "bob", s.why, now)
		switch {
		case s.err != nil:
			require.ErrorIs(t, err, s.err, s.action)
		case s.why == "" || s.action == "dance":
			require.Error(t, err, s.action)
		default:
			require.NoError(t, err, s.action)
			require.Equal(t, "bob", d.Actor)
			require.Equal(t, s.why, d.Reason)
		}
		require.Equal(t, s.state, r.State, "after %s", s.action)
		require.Equal(t, s.stage, r.Stage, "after %s", s.action)
	}
	require.Equal(t, []uint32{1002}, r.Deny)
	// Manual halts do not roll back by themselves; the log has every action.
	require.Equal(t, []string{"start", "pause", "promote", "resume", "halt", "resume", "rollback"}, kinds(r.Decisions))
}

func TestStartChecksTheSpec(t *testing.T) {
	f := newFleet(t, 10, 2, 1001)
	for _, tc := range []struct {
		name string
		spec controller.Spec
		want string
	}{
		{"no version", controller.Spec{Channel: 291}, "needs a channel and a version"},
		{"same version", controller.Spec{Channel: 291, To: 1001}, "already what the channel runs"},
		{"schedule", controller.Spec{Channel: 291, To: 1002, Schedule: "yolo"}, `schedule "yolo"`},
		{"shrinking", controller.Spec{Channel: 291, To: 1002, Stages: []controller.StageSpec{{Name: "a", Percent: 50}, {Name: "b", Percent: 10}, {Name: "c", Percent: 100}}}, "nested"},
		{"not the fleet", controller.Spec{Channel: 291, To: 1002, Stages: []controller.StageSpec{{Name: "a", Percent: 50}}}, "must be 100%"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.c.Start(tc.spec, "alice", "", f.now)
			require.ErrorContains(t, err, tc.want)
			_, ok := f.c.Rollout(291)
			require.False(t, ok, "a refused start leaves nothing behind")
		})
	}
	_, err := f.c.Start(controller.Spec{Channel: 291, To: 1002, Schedule: controller.ScheduleEmergency}, "alice", "", f.now)
	require.NoError(t, err)
	r, _ := f.c.Rollout(291)
	require.Equal(t, uint32(1001), r.From, "From defaults to what most hosts run")
	require.Equal(t, 5*time.Minute, r.Stages[0].Bake, "emergency: a sixth of the standard bake")
	require.Len(t, r.Stages, 6)
	_, err = f.c.Start(controller.Spec{Channel: 291, To: 1003}, "alice", "", f.now)
	require.ErrorIs(t, err, controller.ErrState, "one rollout per channel at a time")
}

// TestRestart: a rollout saved as JSON and loaded into a new controller
// carries on exactly where it was, gate evidence included.
func TestRestart(t *testing.T) {
	f := newFleet(t, 200, 5, 1001)
	r := f.start(t, 1002)
	f.step(t, r, 4*time.Minute, func(string) bool { return true })
	f.report(f.ids[100], 1001, controller.Event{Kind: wire.EventSensorCrashed, Channel: 291})
	f.step(t, r, 4*time.Minute, func(string) bool { return true })

	ch := f.c.TakeChanges()
	require.Len(t, ch.Rollouts, 1)
	var hosts []*controller.Host
	hb, err := json.Marshal(ch.Hosts)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(hb, &hosts))
	rb, err := json.Marshal(ch.Rollouts)
	require.NoError(t, err)
	var rs []*controller.Rollout
	require.NoError(t, json.Unmarshal(rb, &rs))

	c2 := controller.New(hosts, rs)
	r2, ok := c2.Rollout(291)
	require.True(t, ok)
	require.Equal(t, r.Stage, r2.Stage)
	require.Equal(t, r.State, r2.State)
	require.Equal(t, r.GateState, r2.GateState)
	require.Equal(t, r.Counts, r2.Counts)
	require.Equal(t, f.c.Plan(291), c2.Plan(291))
	require.Equal(t, c2.Hosts(), 200)
	require.Equal(t, f.c.Versions(291), c2.Versions(291))
}

// BenchmarkEvaluate1M: one gate evaluation over a million hosts' counters,
// the rollout in its 10% stage. It also reports the heap the controller
// holds per host once the fleet is loaded and has reported (heap-bytes/host:
// live heap after a collection, less the live heap before the hosts were
// made), the figure a leader's memory scales with.
func BenchmarkEvaluate1M(b *testing.B) {
	const n = 1_000_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	hosts := make([]*controller.Host, n)
	now := t0.Add(time.Hour)
	for i := range hosts {
		hosts[i] = &controller.Host{ID: fmt.Sprintf("h-%07d", i), LastSeen: now, Versions: map[uint32]uint32{291: 1001}}
	}
	c := controller.New(hosts, nil)
	_, err := c.Start(controller.Spec{Channel: 291, To: 1002, From: 1001, Stages: []controller.StageSpec{
		{Name: "10%", Percent: 10, Bake: 1000 * time.Hour, MinHosts: 10}, {Name: "100%", Percent: 100}}}, "bench", "", t0)
	if err != nil {
		b.Fatal(err)
	}
	r, _ := c.Rollout(291)
	// Every host reports, with a health sample, so the walk does the
	// health test's work too (limits from the controls, judgements).
	for i, h := range hosts {
		sample := &wire.Health{Seconds: 60, CPU: 0.01 * float64(1+i%17), RSS: 100 << 20, Events: uint64(6000 + i%1000), LatencyMicros: 40}
		if rollout.Bucket(h.ID) < rollout.Buckets/10 { // the 10% stage
			_, _ = c.Ingest(controller.Report{HostID: h.ID, Versions: map[uint32]uint32{291: 1002}, Health: sample,
				Events: []controller.Event{{Seq: 1, Kind: wire.EventHealthy, Channel: 291, Version: 1002}}}, now)
		} else {
			_, _ = c.Ingest(controller.Report{HostID: h.ID, Versions: map[uint32]uint32{291: 1001}, Health: sample,
				Events: []controller.Event{{Seq: 1, Kind: wire.EventHeartbeat, Channel: 291, Version: 1001}}}, now)
		}
	}
	c.Evaluate(now) // the first draws the health limits
	c.TakeChanges()
	hosts = nil  // the controller's own references are what counts
	runtime.GC() // the set-up's garbage is not the evaluation's cost
	runtime.ReadMemStats(&after)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c.Evaluate(now.Add(time.Minute))
	}
	b.StopTimer()
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-bytes/host") // after ResetTimer, which drops reported metrics
	if r.State != controller.StateRunning || r.Stage != 0 {
		b.Fatalf("the rollout moved (%s, stage %d): the benchmark must measure evaluations that walk the fleet", r.State, r.Stage)
	}
	if r.Counts.TreatedAtRisk+r.Counts.ControlAtRisk != n {
		b.Fatalf("counted %d treated + %d control hosts, want %d", r.Counts.Treated, r.Counts.Control, n)
	}
}

// TestTrialWithoutHealthyReport: a treated host that keeps talking but
// never reports healthy is failing its trial.
func TestTrialWithoutHealthyReport(t *testing.T) {
	f := newFleet(t, 20, 3, 1001)
	r := f.start(t, 1002)
	stuck := f.canon[1]
	f.report(stuck, 1002, ev(wire.EventInstalled, 1002, ""))
	for range 4 {
		f.now = f.now.Add(5 * time.Minute)
		for _, id := range f.ids {
			v := uint32(1001)
			if id == stuck {
				v = 1002
			}
			f.report(id, v)
		}
		f.c.Evaluate(f.now)
	}
	require.Equal(t, int64(1), r.Counts.TreatedFailures)
	require.Zero(t, r.Counts.TreatedSilent, "it was heard from: not silence")
}

// TestSilenceHasItsOwnTest: silence and reported failures are weighed by
// two tests, so hosts going offline among the controls do not hide a crash
// regression, and reported crashes do not make silence look worse.
func TestSilenceHasItsOwnTest(t *testing.T) {
	r, _, err := controller.NewRollout(controller.Spec{Channel: 291, To: 1002, From: 1001, Stages: []controller.StageSpec{
		{Name: "10%", Percent: 10, Bake: time.Hour}, {Name: "all", Percent: 100}}}, nil, nil, nil, "t", "", t0)
	require.NoError(t, err)
	// 1,000 treated and 9,000 controls. Controls go silent 10 times as
	// often as treated hosts; treated hosts crash 10 times as often.
	now := t0
	var cnt controller.Counts
	cnt.TreatedAtRisk, cnt.ControlAtRisk = 1000, 9000
	for range 60 {
		now = now.Add(time.Minute)
		cnt.TreatedFailures += 1 // a crash a minute among the treated
		cnt.ControlFailures += 1 // ...and among nine times as many controls
		cnt.ControlFailures += 10
		cnt.ControlSilent += 10 // many controls drop off the network
		r.Observe(cnt, now)
		if r.Result.Reject {
			break
		}
	}
	require.True(t, r.Result.Reject, "the crash test sees 9x: %+v", r.Result)
	require.Equal(t, r.Result.Statistic, r.Halt(now, "gate", "x", "")[0].Evidence.Statistic)
	require.False(t, r.SilenceResult.Reject)
	require.Less(t, r.SilenceResult.Statistic, 0.0, "silence favours the new version here")
}

// TestHeartbeatsKeepNoTrack: a control host that only sends heartbeats
// costs the rollout nothing to remember (a million of them are persisted).
func TestHeartbeatsKeepNoTrack(t *testing.T) {
	f := newFleet(t, 10, 2, 1001)
	f.start(t, 1002)
	f.c.TakeChanges()
	f.report(f.ids[9], 1001, controller.Event{Kind: wire.EventHeartbeat, Channel: 291, Version: 1001})
	ch := f.c.TakeChanges()
	require.Len(t, ch.Hosts, 1)
	require.Empty(t, ch.Hosts[0].Tracks)
	f.report(f.ids[9], 1001, ev(wire.EventSensorCrashed, 0, "signal: killed"))
	require.Len(t, f.c.TakeChanges().Hosts[0].Tracks, 1, "a crash is remembered, as a control failure")
}

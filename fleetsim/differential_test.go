package fleetsim

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/wire"
)

// The differential test: fleetsim counts the fleet itself (walking ten
// million controller.Hosts at every step would be far too slow), so it
// re-implements the controller's count. Here one modelled fleet drives
// both: every host is admitted to a real controller.Controller (the canary
// group tagged canary, buckets from the host ids), and what the model's
// hosts do goes to it as the telemetry they would send, with a rising seq
// per host. At every step both count, and the counts (treated and control,
// failures, silent, at risk, healthy) must be the same, and so must the
// decisions; so must the counts at a canary's revert, which halts.
//
// What the server hears is the model's assumption, fed as such: a host
// that takes the version says so at once (installed), a reverted one when
// its report arrives (reverted), a healthy one when its health window ends
// or, if it was away then, when it is back (healthy), a background crash
// at once (sensor-crashed); and a host is heard until it stops talking
// (it goes offline, crash-loops, or holds back a revert report): a
// heartbeat then, when it comes back, and often enough in between.
//
// The test found four places where the sim counted otherwise than the
// controller; the sim was fixed in each:
//   - hosts offline when the rollout started were control hosts at risk
//     from the start, though the server had not heard from them;
//   - silence was counted the moment a host had been away for the window,
//     the controller counts it when it evaluates (a host back before then
//     is not silent), and a host that had reverted but not yet reported it
//     was never silent;
//   - a healthy report came up to a telemetry interval after the window,
//     while the host was heard all along (the controller would call that
//     host failing its trial), and one that was away then reported late;
//   - background crashes struck no host in particular, so a crashed host
//     could fail again (silence, a revert) and count twice, and a crashed
//     healthy host stayed healthy.

const (
	diffChannel = 291
	diffFrom    = 1001
	diffTo      = 1002
)

// heartbeatEvery is how often an online host with nothing to say is heard
// from in the mirror: well within the silence window.
const heartbeatEvery = 20 * time.Minute

// mirror is the hook that drives the controller from the sim.
type mirror struct {
	t       *testing.T
	c       *controller.Controller
	ids     []string
	seq     []uint64
	heard   []int   // tick of the last report sent, -1 for none
	state   []uint8 // the sim's host state and flags when last seen here
	flags   []uint16
	pending []bool // reverted by the guard, its report not yet sent
	started bool

	steps, reports int
	// stageHostsDiff is the largest difference in StageHosts, which the
	// sim estimates (it is not compared).
	stageHostsDiff int64
	failed         bool
}

func newMirror(t *testing.T, hosts int) *mirror {
	m := &mirror{t: t, c: controller.New(nil, nil), ids: make([]string, hosts), seq: make([]uint64, hosts),
		heard: make([]int, hosts), state: make([]uint8, hosts), flags: make([]uint16, hosts), pending: make([]bool, hosts)}
	for i := range hosts {
		m.ids[i] = fmt.Sprintf("h-%032x", i)
		m.heard[i] = -1
	}
	return m
}

func (m *mirror) bucket(h int) int { return rollout.Bucket(m.ids[h]) }

// start admits the fleet (the canary group tagged canary, as the sim's
// plan names it) and starts the sim's rollout on the controller.
func (m *mirror) start(s *sim) {
	if m.started {
		return
	}
	m.started = true
	for i, id := range m.ids {
		var a controller.Admission
		if s.flags[i]&fCanary != 0 {
			a.Tags = []string{"canary"}
		}
		_, err := m.c.Admit(id, a, s.at(0))
		require.NoError(m.t, err)
		m.state[i], m.flags[i] = s.state[i], s.flags[i]
	}
	_, err := m.c.Start(s.r.Spec, "fleetsim", "", s.at(0))
	require.NoError(m.t, err)
	m.c.Settle()
}

// send is host h's telemetry batch: the version it runs and its events.
func (m *mirror) send(s *sim, h int, running uint32, events ...controller.Event) {
	if len(events) == 0 {
		events = []controller.Event{{Kind: wire.EventHeartbeat}}
	}
	for i := range events {
		m.seq[h]++
		events[i].Seq = m.seq[h]
		events[i].Channel = diffChannel
	}
	_, err := m.c.Ingest(controller.Report{HostID: m.ids[h], Versions: map[uint32]uint32{diffChannel: running}, Events: events}, s.at(s.tick))
	require.NoError(m.t, err)
	m.heard[h] = s.tick
	m.reports++
}

// running is the version host h runs in the sim.
func running(s *sim, h int) uint32 {
	if s.state[h] == stNew || s.state[h] == stDown {
		return diffTo
	}
	return diffFrom
}

// talks reports whether host h sends telemetry now: online, not
// crash-looping, and not holding back a revert it has yet to report.
func (m *mirror) talks(s *sim, h int) bool {
	return s.flags[h]&fOffline == 0 && s.state[h] != stDown && !m.pending[h]
}

func (m *mirror) event(s *sim, h int, kind uint8) {
	m.start(s)
	before, beforeFlags := m.state[h], m.flags[h]
	switch kind {
	case evAdopt:
		if before == stOld && s.state[h] != stOld {
			m.send(s, h, diffTo, controller.Event{Kind: wire.EventInstalled, Version: diffTo})
		}
	case evRevert:
		if before == stDown && s.state[h] == stReverted {
			m.pending[h] = true // rebooted onto last-known-good; it reports with its next telemetry
		}
	case evReport:
		if s.flags[h]&fOffline == 0 && m.pending[h] {
			m.pending[h] = false
			m.send(s, h, diffFrom, controller.Event{Kind: wire.EventReverted, Version: diffTo, Reason: "load-crash"})
			if s.flags[h]&fCanary != 0 {
				m.compare(s, s.r.Counts, "canary report")
			}
		}
	case evLoaded:
		if beforeFlags&fLoaded == 0 && s.flags[h]&fLoaded != 0 {
			m.send(s, h, diffTo, controller.Event{Kind: wire.EventTrialStarted, Version: diffTo})
		}
	case evHealthy:
		if beforeFlags&fHealthy == 0 && s.flags[h]&fHealthy != 0 {
			m.send(s, h, diffTo, controller.Event{Kind: wire.EventHealthy, Version: diffTo})
		}
	case evOffline:
		if s.state[h] != stDown && !m.pending[h] {
			m.send(s, h, running(s, h)) // heard until it goes
		}
	case evCrash:
		m.send(s, h, running(s, h), controller.Event{Kind: wire.EventSensorCrashed, Version: running(s, h)})
	case evOnline:
		switch {
		case beforeFlags&fHealthy == 0 && s.flags[h]&fHealthy != 0:
			m.send(s, h, diffTo, controller.Event{Kind: wire.EventHealthy, Version: diffTo}) // its health window ended while it was away
		case m.talks(s, h):
			m.send(s, h, running(s, h))
		}
	}
	m.state[h], m.flags[h] = s.state[h], s.flags[h]
	m.c.Settle()
}

func (m *mirror) step(s *sim) {
	m.start(s)
	every := s.ticks(heartbeatEvery)
	for h := range m.ids {
		if m.talks(s, h) && (m.heard[h] < 0 || s.tick-m.heard[h] >= every) {
			m.send(s, h, running(s, h))
		}
	}
	r, _ := m.c.Rollout(diffChannel)
	if r.State != controller.StateRunning && r.State != controller.StatePaused {
		return // decided: neither counts any more
	}
	want := s.counts()
	m.c.Evaluate(s.at(s.tick))
	m.c.Settle()
	m.steps++
	m.compare(s, want, "step")
}

// compare requires the controller's counts to be the sim's.
func (m *mirror) compare(s *sim, sim controller.Counts, where string) {
	if m.failed {
		return
	}
	r, _ := m.c.Rollout(diffChannel)
	got := r.Counts
	if d := got.StageHosts - sim.StageHosts; d > m.stageHostsDiff || -d > m.stageHostsDiff {
		m.stageHostsDiff = max(d, -d)
	}
	type gated struct {
		Treated, Control, TreatedFailures, ControlFailures, TreatedSilent, ControlSilent, TreatedAtRisk, ControlAtRisk, Healthy, WaveHosts, WaveLoaded int64
		State                                                                                                                                          controller.State
		Stage                                                                                                                                          int
	}
	of := func(c controller.Counts, r *controller.Rollout) gated {
		return gated{c.Treated, c.Control, c.TreatedFailures, c.ControlFailures, c.TreatedSilent, c.ControlSilent, c.TreatedAtRisk, c.ControlAtRisk, c.Healthy, c.WaveHosts, c.WaveLoaded, r.State, r.Stage}
	}
	w, g := of(sim, s.r), of(got, r)
	if where == "step" {
		// The sim's rollout decides after the step; compare the state it
		// was in before, which the controller's had before Evaluate.
		w.State, w.Stage, g.State, g.Stage = "", 0, "", 0
	}
	if w != g {
		m.failed = true
		m.t.Errorf("%s at %v (tick %d): the sim counts\n  %+v\nthe controller\n  %+v", where, time.Duration(s.tick)*s.p.Resolution, s.tick, w, g)
	}
}

func TestDifferential(t *testing.T) {
	for _, tc := range []struct {
		name     string
		scenario Scenario
		guard    bool
		offline  float64
		want     controller.State // how the rollout ends
	}{
		{"healthy update, churn", Healthy, true, 0.05, controller.StateCompleted},
		{"crash on load, a canary reverts", CrashAll, true, 0.02, controller.StateRolledBack},
		{"crash on load without the guard: silence", CrashAll, false, 0.02, controller.StateRolledBack},
		{"one percent crash on load", CrashOnePct, true, 0.05, controller.StateRolledBack},
		{"background crashes ten times as often", Background10x, true, 0.02, controller.StateRolledBack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Defaults()
			p.Hosts, p.Canaries, p.Duration, p.Emergency = 3000, 100, 8*time.Hour, true
			p.Scenario, p.Policy, p.Guard, p.Seed = tc.scenario, Ringfence, tc.guard, 8
			p.Offline, p.OfflineMean = tc.offline, time.Hour
			p.BackgroundRate = 1e-3 // ten times the default: a few thousand hosts see some
			p.Health = false        // the mirror sends no health samples (the controller's tests judge them)
			m := newMirror(t, p.Hosts)
			res, err := run(p, m)
			require.NoError(t, err)
			r, _ := m.c.Rollout(diffChannel)
			t.Logf("%d steps and %d reports; the rollout ended %s at stage %d after %d decisions; StageHosts (estimated by the sim) differed by up to %d",
				m.steps, m.reports, r.State, r.Stage, len(r.Decisions), m.stageHostsDiff)
			require.Positive(t, m.steps)
			require.Equal(t, tc.want, r.State)
			require.Equal(t, tc.want == controller.StateRolledBack, res.Halted, "the sim's rollout ended alike")
			require.Len(t, res.Decisions, len(r.Decisions), "and made as many decisions")
			for i, d := range r.Decisions {
				require.Equal(t, d.Kind, res.Decisions[i].Kind)
				require.Equal(t, d.Time, res.Decisions[i].Time)
			}
		})
	}
}

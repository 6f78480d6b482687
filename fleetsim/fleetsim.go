// Package fleetsim is a discrete-event simulation of a fleet taking a
// content update, for ringfence-sim: millions of hosts that check in with
// jitter, go offline and come back, reboot after crashes, crash in the
// background, and (optionally) run the host-side boot guard, under one of
// three rollout policies. The ringfence policy is the real rollout
// controller and gate (package controller, the code ringfence-server runs):
// the simulation measures the same counts the server's fleet walk would
// and hands them to Rollout.Observe and Rollout.Step; canary reverts go to
// Rollout.Halt as the server's telemetry intake sends them.
//
// The model, per host: a bucket (uniform in 0..9999, as the SHA-256 of a
// host id is), whether it is in the canary group, online or offline
// (offline periods exponential, a set fraction of the fleet offline at any
// time), and its state on the new version. A host takes the new version at
// its first check-in after the plan includes it (the check-in phase is
// uniform over the interval; an offline host checks in when it is back).
// Content that crashes a host on load crashes it at once; with the boot
// guard the host is back on last-known-good after a reboot and reports the
// revert with its next telemetry; without it the host crash-loops, silent,
// until someone repairs it by hand. Healthy hosts report healthy when the
// health window ends (or when they are back, if they were away then).
// Background sensor crashes are Poisson, per host-hour, and strike hosts at
// risk; one that is talking reports its crash at once. Time advances in
// fixed ticks (Resolution); the controller evaluates every Step.
//
// The server hears a host continuously while it talks (online, not
// crash-looping, not holding back a revert report) and counts as the
// controller does: the control group is the hosts heard from since the
// start, and a host unheard for the silence window fails, on either side,
// at the next step. The sim keeps these counts itself (ten million
// controller.Hosts would take gigabytes and seconds per step);
// differential_test.go drives the real controller with the same fleet and
// holds the counts equal.
//
// Channels plays several channels' updates at once on one fleet (a host
// follows several channels; each has its own rollout on the real
// controller): the host model is shared, each channel keeps its own state
// and counts, and a host's check-in serves all its channels. With one
// trial at a time a channel's version waits on a host while another
// channel's trial is in its health window.
package fleetsim

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/rollout"
)

// Scenario is what the new version does to the hosts that load it.
type Scenario string

// Scenarios.
const (
	CrashAll      Scenario = "crash-all"      // the new version crashes every host on load (2024)
	CrashOnePct   Scenario = "crash-1pct"     // it crashes 1% of hosts on load (an event only some see)
	Background10x Scenario = "background-10x" // hosts on it crash 10x as often, not at load
	Background3x  Scenario = "background-3x"  // hosts on it crash 3x as often
	CPUDouble     Scenario = "cpu-2x"         // the agent burns twice its usual CPU on it; nothing crashes
	SilentSensor  Scenario = "silent-sensor"  // the agent runs and reports, and processes no events
	MemoryLeak    Scenario = "memory-leak"    // the agent's memory grows by its usual size every hour
	Healthy       Scenario = "healthy"        // a good update
)

func (s Scenario) String() string { return string(s) }

// Policy is how the new version is rolled out.
type Policy string

// Policies.
const (
	AllAtOnce Policy = "all-at-once" // everyone takes it at their next check-in
	Waves     Policy = "waves"       // time-based waves, no health gate
	Ringfence Policy = "ringfence"   // the real controller and gate, default plan
)

func (p Policy) String() string { return string(p) }

// Scenarios and Policies list them in report order.
var (
	Scenarios = []Scenario{CrashAll, CrashOnePct, Background10x, Background3x, CPUDouble, SilentSensor, MemoryLeak, Healthy}
	Policies  = []Policy{AllAtOnce, Waves, Ringfence}
)

// ParseScenario returns the scenario named s; the error of an unknown one
// lists the scenarios.
func ParseScenario(s string) (Scenario, error) { return parse("scenario", s, Scenarios) }

// ParsePolicy returns the policy named s; the error of an unknown one lists
// the policies.
func ParsePolicy(s string) (Policy, error) { return parse("policy", s, Policies) }

func parse[T ~string](what, s string, valid []T) (T, error) {
	for _, v := range valid {
		if string(v) == s {
			return v, nil
		}
	}
	names := make([]string, len(valid))
	for i, v := range valid {
		names[i] = string(v)
	}
	return "", fmt.Errorf("fleetsim: %s %q; want one of %s", what, s, strings.Join(names, ", "))
}

// Wave is one step of the waves policy: from At after the start, Percent of
// buckets have the version.
type Wave struct {
	At      time.Duration
	Percent float64
}

// BottlerocketWaves is Bottlerocket's default wave schedule.
var BottlerocketWaves = []Wave{
	{time.Hour, 1}, {4 * time.Hour, 5}, {24 * time.Hour, 15}, {48 * time.Hour, 40},
	{96 * time.Hour, 60}, {120 * time.Hour, 90}, {144 * time.Hour, 100},
}

// Params describe one run.
type Params struct {
	Hosts    int
	Duration time.Duration
	Scenario Scenario
	Policy   Policy
	Seed     uint64
	// Guard is the host-side boot guard (a crash on load reverts to
	// last-known-good after a reboot); off models hosts without Ringfence's
	// host side.
	Guard bool
	// Emergency uses the emergency schedule (ringfence policy).
	Emergency bool
	// Canaries is the size of the canary group (the first stage).
	Canaries int
	// FixedBakes keeps every stage to its bake time: no promotion by the
	// evidence, no waiting for it (the schedule before both).
	FixedBakes bool
	// Health: hosts send health samples (the agent's CPU, memory, events
	// and latency), and the gate's health test judges them.
	Health bool

	CheckIn      time.Duration // check-in interval (the daemon's poll interval)
	Telemetry    time.Duration // telemetry interval: reports arrive within it
	Reboot       time.Duration // from a crash to the host up again
	HealthWindow time.Duration
	// BackgroundRate is sensor crashes per host-hour on any version.
	BackgroundRate float64
	// Offline is the fraction of hosts offline at any time; OfflineMean
	// the mean length of an offline period.
	Offline     float64
	OfflineMean time.Duration

	Resolution time.Duration // the event clock's tick
	Step       time.Duration // how often the controller evaluates
	Sample     time.Duration // how often the series is sampled
}

// Defaults returns the parameters of the runs in docs/fleetsim.md.
func Defaults() Params {
	return Params{Hosts: 10_000_000, Duration: 72 * time.Hour, Scenario: CrashAll, Policy: Ringfence, Guard: true, Canaries: 500, Health: true,
		CheckIn: 5 * time.Minute, Telemetry: time.Minute, Reboot: 3 * time.Minute, HealthWindow: 10 * time.Minute,
		BackgroundRate: 1e-4, Offline: 0.01, OfflineMean: 4 * time.Hour,
		Resolution: 10 * time.Second, Step: time.Minute, Sample: 10 * time.Minute}
}

// Check says what is wrong with p.
func (p Params) Check() error {
	switch {
	case p.Hosts < 1 || p.Hosts > 1<<30:
		return fmt.Errorf("fleetsim: hosts %d: want 1..2^30", p.Hosts)
	case p.Duration <= 0 || p.Resolution <= 0 || p.Step < p.Resolution || p.Sample < p.Resolution:
		return fmt.Errorf("fleetsim: duration, resolution, step and sample must be positive, step and sample at least the resolution")
	case p.Duration/p.Resolution > 10_000_000:
		return fmt.Errorf("fleetsim: %v at %v resolution is too many ticks; raise the resolution", p.Duration, p.Resolution)
	case p.Canaries < 0 || p.Canaries > p.Hosts:
		return fmt.Errorf("fleetsim: canaries %d: want 0..hosts", p.Canaries)
	case p.Offline < 0 || p.Offline >= 1 || p.OfflineMean <= 0 && p.Offline > 0:
		return fmt.Errorf("fleetsim: offline fraction must be in [0, 1) with a positive mean period")
	case p.CheckIn <= 0 || p.Telemetry <= 0 || p.Reboot < 0 || p.HealthWindow <= 0 || p.BackgroundRate < 0:
		return fmt.Errorf("fleetsim: check-in, telemetry and health window must be positive; reboot and background rate not negative")
	}
	if _, err := ParseScenario(string(p.Scenario)); err != nil {
		return err
	}
	_, err := ParsePolicy(string(p.Policy))
	return err
}

// Sample is a point of the series.
type Sample struct {
	At      time.Duration `json:"at"`
	Exposed int           `json:"exposed"` // hosts that ever loaded the new version
	Running int           `json:"running"` // hosts running it now
	Down    int           `json:"down"`    // hosts without working content now
}

// Result is what one run measured.
type Result struct {
	Scenario Scenario `json:"scenario"`
	Policy   Policy   `json:"policy"`
	Guard    bool     `json:"guard"`
	Hosts    int      `json:"hosts"`
	// Loaded: hosts that ever loaded the new version; Crashed: hosts that
	// crashed on it (on load, or in the background at the raised rate);
	// Down: hosts crash-looping at the end (needing hands without the
	// guard).
	Loaded  int `json:"loaded"`
	Crashed int `json:"crashed"`
	Down    int `json:"down"`
	// Halted: the controller halted; HaltAfter from the start,
	// HaltAfterReport from the first failure report (-1 when none).
	Halted          bool          `json:"halted"`
	HaltAfter       time.Duration `json:"halt_after"`
	HaltAfterReport time.Duration `json:"halt_after_report"`
	// Reach99 is when 99% of hosts ran the new version (-1: never).
	Reach99 time.Duration `json:"reach_99"`
	// Waited: hosts whose version of this channel waited for another
	// channel's trial to end (Channels, one trial at a time).
	Waited int      `json:"waited,omitempty"`
	Series []Sample `json:"series"`
	// Decisions are the controller's, ringfence policy only.
	Decisions []controller.Decision `json:"decisions,omitempty"`
}

// host states.
const (
	stOld      uint8 = iota // on the old version
	stNew                   // running the new version
	stDown                  // crash-looping on the new version (no guard)
	stReverted              // back on the old version after a crash; never retries
)

// host flags.
const (
	fCanary uint16 = 1 << iota
	fSusceptible
	fOffline
	fPending // included by the plan, not yet taken
	fHealthy
	fFailed     // a treated failure was counted
	fCtrlFailed // a control failure was counted
	fIncluded   // the plan includes it
	fHealthDue  // its health window ended while it was offline: it reports healthy when back
	fWaited     // with one trial at a time, its version waited for another channel's trial
	fLoaded     // the server heard its trial started: it passed its load
)

// event kinds, in the low 4 bits of an event (the channel in the next 4).
// evAdopt, evOffline and evOnline are the host's, for all its channels.
const (
	evAdopt   uint8 = iota // the host checks in: it takes what its channels have for it
	evRevert               // the boot guard brings the host back on last-known-good
	evReport               // a revert report reaches the server
	evHealthy              // the trial's health window ends
	evOffline
	evOnline
	evSilence  // the host may have been unheard for the silence window
	evRollback // the host takes the rollback plan at its check-in
	evLoaded   // the host's trial-started report reaches the server
	evCrash    // not an event: what the hook hears of a background crash
)

// fleet is what the channels of a run share: the hosts (buckets, churn,
// check-ins), the event clock and the random source. A run of one channel
// (Run) has one sim on it; Channels has one per channel.
type fleet struct {
	p    Params
	rng  *rand.Rand
	t0   time.Time
	tick int // current tick

	byBkt [][]int32
	// waveOrder is the canary group in the order the controller picks a
	// first wave from it: by bucket, then by id (a host's index here).
	waveOrder []int32
	wheel     [][]uint64    // per tick: host<<8 | channel<<4 | kind
	onMean    time.Duration // mean online period, for the offline fraction

	chans []*sim
	// next is the tick of each host's coming check-in, kept when more than
	// one channel shares the hosts: one check-in serves every channel, so a
	// channel that needs the host's next check-in joins the one coming.
	// (With one channel nothing is shared, and the single-channel model
	// stays as it was.)
	next []int32
	// trial, with one trial at a time, is the channel (its index plus one)
	// whose trial each host runs, 0 for none.
	trial []uint8

	health health // the health test's limits (Params.Health)

	hook hook // nil but in tests
}

// sim is one channel's rollout on the fleet.
type sim struct {
	*fleet
	c int // its index in fleet.chans

	flags []uint16
	state []uint8
	since []int32 // last heard (tick) when it is not talking, for the silence check; unheard: not yet

	// the plan
	limit   int // buckets below it are included
	canary  bool
	stopped bool // halted or rolled back: no new adoptions
	rolled  bool // rolled back: hosts on the new version go back

	// counts
	loaded, running, down, crashed int
	treatedAtRisk, controlAtRisk   int64
	treatedFail, controlFail       int64
	treatedSilent, controlSilent   int64
	healthy                        int64
	judged, unhealthy              int64 // the health test's treated hosts judged, found unhealthy
	waveHosts                      []int // the canary group's first wave while it alone has the version
	waveLoaded                     int64
	firstReport                    int
	res                            *Result

	r *controller.Rollout
}

// hook watches a run from inside: the differential test drives the real
// controller with what it sees.
type hook interface {
	// bucket is host h's bucket, in place of a random one.
	bucket(h int) int
	// event follows the sim's handling of host h's event of kind; an
	// event of the host (a check-in, going offline, coming back) comes to
	// every channel's sim in turn.
	event(s *sim, h int, kind uint8)
	// step comes at each step of a ringfence rollout, before the sim's
	// counts go to the gate.
	step(s *sim)
}

// Run simulates one rollout.
func Run(p Params) (*Result, error) { return run(p, nil) }

func run(p Params, hk hook) (*Result, error) {
	if err := p.Check(); err != nil {
		return nil, err
	}
	f, err := newFleet(p, 1, false, hk)
	if err != nil {
		return nil, err
	}
	return f.chans[0].res, nil
}

// newFleet sets up k channels on one fleet (one trial at a time per host
// if oneTrial), runs them, and leaves each channel's result in its res.
func newFleet(p Params, k int, oneTrial bool, hk hook) (*fleet, error) {
	f := &fleet{p: p, rng: rand.New(rand.NewPCG(p.Seed, p.Seed^0x9e3779b97f4a7c15)), t0: time.Date(2024, 7, 19, 4, 9, 0, 0, time.UTC), hook: hk}
	for c := range k {
		s := &sim{fleet: f, c: c, firstReport: -1}
		s.res = &Result{Scenario: p.Scenario, Policy: p.Policy, Guard: p.Guard, Hosts: p.Hosts, HaltAfter: -1, HaltAfterReport: -1, Reach99: -1}
		f.chans = append(f.chans, s)
	}
	if k > 1 {
		f.next = make([]int32, p.Hosts)
	}
	if oneTrial {
		f.trial = make([]uint8, p.Hosts)
	}
	f.setup()
	f.setupHealth()
	for _, s := range f.chans {
		if err := s.start(); err != nil {
			return nil, err
		}
	}
	f.loop()
	for _, s := range f.chans {
		s.res.Loaded, s.res.Crashed, s.res.Down = s.loaded, s.crashed, s.down
		if s.r != nil {
			s.res.Decisions = s.r.Decisions
		}
		for _, fl := range s.flags {
			if fl&fWaited != 0 {
				s.res.Waited++
			}
		}
	}
	return f, nil
}

func (f *fleet) ticks(d time.Duration) int { return int(d / f.p.Resolution) }

func (f *fleet) at(tick int) time.Time { return f.t0.Add(time.Duration(tick) * f.p.Resolution) }

// after is the tick d from now (at least the next tick).
func (f *fleet) after(d time.Duration) int {
	return f.tick + max(1, int(math.Ceil(float64(d)/float64(f.p.Resolution))))
}

// put puts an event of kind for host h (on channel c) at tick t.
func (f *fleet) put(h, c int, kind uint8, t int) {
	if t >= len(f.wheel) {
		return // past the end of the run
	}
	f.wheel[t] = append(f.wheel[t], uint64(h)<<8|uint64(c)<<4|uint64(kind))
}

// schedule puts an event of the channel's for host h d from now (at least
// the next tick).
func (s *sim) schedule(h int, kind uint8, d time.Duration) { s.put(h, s.c, kind, s.after(d)) }

func (s *sim) scheduleAt(h int, kind uint8, t int) { s.put(h, s.c, kind, t) }

// scheduleSilence puts host h's silence check at the first step more than
// the silence window after it was last heard: the controller judges
// silence when it evaluates, and a host heard again before then is not
// silent.
func (s *sim) scheduleSilence(h int) {
	step := s.ticks(s.p.Step)
	t := int(s.since[h]) + s.ticks(controller.DefaultSilence) + 1
	s.scheduleAt(h, evSilence, (t+step-1)/step*step)
}

// talking reports whether the server hears host h now (the model hears a
// host continuously while it talks): it is online, not crash-looping, and
// not holding back a revert it has yet to report (a host the rollback sent
// back has none).
func (s *sim) talking(h int) bool {
	f, st := s.flags[h], s.state[h]
	return f&fOffline == 0 && st != stDown && !(st == stReverted && f&fFailed == 0 && !s.rolled)
}

func (f *fleet) uniform(d time.Duration) time.Duration {
	return time.Duration(f.rng.Int64N(int64(d)) + 1)
}

func (f *fleet) exp(mean time.Duration) time.Duration {
	return time.Duration(f.rng.ExpFloat64() * float64(mean))
}

func (f *fleet) setup() {
	n := f.p.Hosts
	bucket := make([]uint16, n)
	for _, s := range f.chans {
		s.flags = make([]uint16, n)
		s.state = make([]uint8, n)
		s.since = make([]int32, n)
	}
	f.wheel = make([][]uint64, f.ticks(f.p.Duration)+1)
	counts := make([]int, rollout.Buckets)
	for i := range n {
		b := uint16(f.rng.IntN(rollout.Buckets))
		if f.hook != nil {
			b = uint16(f.hook.bucket(i))
		}
		bucket[i] = b
		counts[b]++
		for _, s := range f.chans {
			if i < f.p.Canaries {
				s.flags[i] |= fCanary
			}
			switch f.p.Scenario {
			case CrashAll:
				s.flags[i] |= fSusceptible
			case CrashOnePct:
				if f.rng.Float64() < 0.01 {
					s.flags[i] |= fSusceptible
				}
			}
		}
	}
	f.waveOrder = make([]int32, f.p.Canaries)
	for i := range f.waveOrder {
		f.waveOrder[i] = int32(i)
	}
	slices.SortStableFunc(f.waveOrder, func(a, b int32) int { return cmp.Compare(bucket[a], bucket[b]) })
	f.byBkt = make([][]int32, rollout.Buckets)
	for b, c := range counts {
		f.byBkt[b] = make([]int32, 0, c)
	}
	for i := range n {
		f.byBkt[bucket[i]] = append(f.byBkt[bucket[i]], int32(i))
	}
	// Churn: a fraction offline now, each host's next change drawn from the
	// exponential periods (online periods long enough for that fraction).
	// The control group is the hosts heard from since the start (as the
	// controller counts it): one offline now joins it when it is back.
	for _, s := range f.chans {
		s.controlAtRisk = int64(n)
	}
	if f.p.Offline > 0 {
		f.onMean = time.Duration(float64(f.p.OfflineMean) * (1 - f.p.Offline) / f.p.Offline)
		for i := range n {
			if f.rng.Float64() < f.p.Offline {
				for _, s := range f.chans {
					s.flags[i] |= fOffline
					s.since[i] = unheard
					s.controlAtRisk--
				}
				f.put(i, 0, evOnline, f.after(f.exp(f.p.OfflineMean)))
			} else {
				f.put(i, 0, evOffline, f.after(f.exp(f.onMean)))
			}
		}
	}
}

// unheard is since[h] of a host not heard from since the start.
const unheard = -1

// start publishes the channel's version under the policy.
func (s *sim) start() error {
	switch s.p.Policy {
	case AllAtOnce:
		s.include(rollout.Buckets, true)
	case Waves:
		// the first wave comes at its time, from the loop
	case Ringfence:
		schedule := controller.ScheduleStandard
		if s.p.Emergency {
			schedule = controller.ScheduleEmergency
		}
		spec := controller.Spec{Channel: 291 + uint32(s.c), To: 1002, From: 1001, Schedule: schedule,
			Stages: controller.DefaultStages(schedule, nil, []string{"canary"}), HealthWindow: s.p.HealthWindow}
		if s.p.FixedBakes {
			spec.Promote.Off = true
			for i := range spec.Stages {
				spec.Stages[i].MinEvidence = 0
			}
		}
		r, _, err := controller.NewRollout(spec, nil, nil, nil, "fleetsim", "", s.at(0))
		if err != nil {
			return err
		}
		s.r = r
		s.includeStage(0)
	}
	return nil
}

// includeStage applies the rollout's stage k to the plan.
func (s *sim) includeStage(k int) {
	st := s.r.Stages[k]
	lim := rollout.Stage{Percent: st.Percent}.BucketLimit()
	s.include(lim, len(st.Tags) > 0)
}

// include extends the plan to buckets below limit (and the canary group):
// each newly included host takes the version at its next check-in.
func (s *sim) include(limit int, canary bool) {
	if canary && !s.canary {
		s.canary = true
		if s.r != nil && s.r.FirstWave {
			// The canary stage's first wave: a few hosts, those of the
			// lowest buckets, as the controller picks them.
			for _, h := range s.waveOrder[:min(s.p.Canaries, s.r.Stages[s.r.Stage].Wave)] {
				s.waveHosts = append(s.waveHosts, int(h))
				s.offer(int(h))
			}
		} else {
			for i := range s.p.Canaries {
				s.offer(i)
			}
		}
	}
	for b := s.limit; b < limit; b++ {
		for _, h := range s.byBkt[b] {
			s.offer(int(h))
		}
	}
	s.limit = max(s.limit, limit)
}

func (s *sim) offer(h int) {
	if s.flags[h]&fIncluded != 0 {
		return
	}
	s.flags[h] |= fIncluded | fPending
	if s.flags[h]&fOffline == 0 {
		s.checkIn(h)
	}
}

// checkIn has host h check in at its next check-in (the check-in phase is
// uniform over the interval); with more than one channel, at the one
// coming if there is one. The check-in serves every channel with a
// version for the host.
func (f *fleet) checkIn(h int) {
	if f.next != nil && int(f.next[h]) > f.tick {
		return
	}
	t := f.after(f.uniform(f.p.CheckIn))
	f.put(h, 0, evAdopt, t)
	if f.next != nil {
		f.next[h] = int32(t)
	}
}

// pending reports whether a channel has a version host h has yet to take.
func (f *fleet) pending(h int) bool {
	for _, s := range f.chans {
		if s.flags[h]&fPending != 0 {
			return true
		}
	}
	return false
}

func (f *fleet) loop() {
	stepTicks := f.ticks(f.p.Step)
	sampleTicks := f.ticks(f.p.Sample)
	wave := 0
	for f.tick = 0; f.tick < len(f.wheel); f.tick++ {
		now := time.Duration(f.tick) * f.p.Resolution
		if f.p.Policy == Waves && wave < len(BottlerocketWaves) && now >= BottlerocketWaves[wave].At {
			for _, s := range f.chans {
				s.include(rollout.Stage{Percent: BottlerocketWaves[wave].Percent}.BucketLimit(), false)
			}
			wave++
		}
		evs := f.wheel[f.tick]
		f.wheel[f.tick] = nil
		for _, e := range evs {
			h, c, kind := int(e>>8), int(e>>4&15), uint8(e&15)
			switch kind {
			case evAdopt, evOffline, evOnline:
				f.handle(h, kind)
				if f.hook != nil {
					for _, s := range f.chans {
						f.hook.event(s, h, kind)
					}
				}
			default:
				f.chans[c].handle(h, kind)
				if f.hook != nil {
					f.hook.event(f.chans[c], h, kind)
				}
			}
		}
		for _, s := range f.chans {
			if f.tick%stepTicks == 0 {
				s.background()
				if s.r != nil && !s.stopped {
					if f.hook != nil {
						f.hook.step(s)
					}
					s.r.Observe(s.counts(), s.at(f.tick))
					s.apply(s.r.Step(s.at(f.tick)))
				}
			}
			if s.running >= f.p.Hosts*99/100 && s.res.Reach99 < 0 {
				s.res.Reach99 = now
			}
			if f.tick%sampleTicks == 0 || f.tick == len(f.wheel)-1 {
				s.res.Series = append(s.res.Series, Sample{At: now, Exposed: s.loaded, Running: s.running, Down: s.down})
			}
		}
	}
}

// background draws the step's background sensor crashes among hosts at
// risk on each side (treated ones at ten times the rate in the
// background-10x scenario) and picks the hosts they strike. A host that is
// talking reports its crash at once; one that is not (away, crash-looping,
// or holding back a revert report) says nothing, and its crash counts
// nowhere. A host counts once, so a crash removes it from the hosts at
// risk.
func (s *sim) background() {
	perStep := s.p.BackgroundRate * s.p.Step.Hours()
	treatedRate := perStep
	switch s.p.Scenario {
	case Background10x:
		treatedRate *= 10
	case Background3x:
		treatedRate *= 3
	}
	for _, side := range []struct {
		treated bool
		atRisk  int64
		rate    float64
	}{{true, s.treatedAtRisk, treatedRate}, {false, s.controlAtRisk, perStep}} {
		k := s.poisson(side.rate * float64(side.atRisk))
		if k == 0 {
			continue
		}
		// Rejection sampling over the whole fleet: k*hosts/atRisk draws
		// on average, which is rate*hosts a step however few hosts are at
		// risk. The bound only guards against a miscount.
		for tries := int64(0); k > 0 && tries < 16*k*int64(s.p.Hosts)/side.atRisk+64; tries++ {
			h := s.rng.IntN(s.p.Hosts)
			if !s.atRisk(h, side.treated) {
				continue
			}
			k--
			if !s.talking(h) {
				continue
			}
			if side.treated {
				s.failTreated(h)
				if (s.p.Scenario == Background10x || s.p.Scenario == Background3x) && s.state[h] == stNew {
					s.crashed++ // on the new version
				}
				if s.firstReport < 0 {
					s.firstReport = s.tick
				}
			} else {
				s.failControl(h)
			}
			if s.hook != nil {
				s.hook.event(s, h, evCrash)
			}
		}
	}
}

// atRisk reports whether host h is at risk on the treated side (it took
// the version and has not failed) or on the control side (heard from since
// the start, on the old version, not failed).
func (s *sim) atRisk(h int, treated bool) bool {
	f, st := s.flags[h], s.state[h]
	if treated {
		return st != stOld && f&fFailed == 0
	}
	return st == stOld && f&fCtrlFailed == 0 && s.since[h] != unheard
}

func (s *sim) poisson(mean float64) int64 {
	if mean <= 0 {
		return 0
	}
	if mean > 50 {
		return max(0, int64(math.Round(mean+math.Sqrt(mean)*s.rng.NormFloat64())))
	}
	l, k, p := math.Exp(-mean), int64(0), 1.0
	for {
		p *= s.rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// handle is an event of host h's own: a check-in, going offline, coming
// back. Each channel's sim does its part.
func (f *fleet) handle(h int, kind uint8) {
	switch kind {
	case evAdopt:
		if f.chans[0].flags[h]&fOffline != 0 {
			return
		}
		// The host checks in: each channel with a version for it, in
		// order, starts its trial; with one trial at a time, only while no
		// other trial runs on the host (the others wait for it to end).
		for _, s := range f.chans {
			if s.flags[h]&fPending == 0 {
				continue
			}
			if f.trial != nil && f.trial[h] != 0 && !s.stopped {
				s.flags[h] |= fWaited
				continue
			}
			if s.adopt(h) && f.trial != nil {
				f.trial[h] = uint8(s.c + 1)
			}
		}
	case evOffline:
		off := f.exp(f.p.OfflineMean)
		f.put(h, 0, evOnline, f.after(off))
		for _, s := range f.chans {
			s.offline(h, off)
		}
	case evOnline:
		for _, s := range f.chans {
			s.online(h)
		}
		f.put(h, 0, evOffline, f.after(f.exp(f.onMean)))
		if f.pending(h) {
			f.checkIn(h)
		}
		for _, s := range f.chans {
			if s.rolled && s.state[h] == stNew {
				s.schedule(h, evRollback, s.uniform(s.p.CheckIn))
			}
		}
	}
}

// adopt: host h, checking in, takes the channel's version if it still
// has one for it; it reports whether the host started a trial.
func (s *sim) adopt(h int) bool {
	f := s.flags[h]
	s.flags[h] &^= fPending
	if s.stopped || s.state[h] != stOld {
		return false
	}
	s.loaded++
	s.treatedAtRisk++
	if f&fCtrlFailed == 0 {
		s.controlAtRisk--
	}
	if f&fSusceptible != 0 {
		// It crashes while loading: down until the reboot, for good
		// without the guard.
		s.crashed++
		s.state[h] = stDown
		s.down++
		// Its install was the last the server heard of it: without the
		// guard it crash-loops and says nothing more (silence); with it,
		// it speaks again once it reports the revert.
		s.since[h] = int32(s.tick)
		s.scheduleSilence(h)
		if s.p.Guard {
			s.schedule(h, evRevert, s.p.Reboot)
		}
		return true
	}
	s.state[h] = stNew
	s.running++
	s.schedule(h, evHealthy, s.p.HealthWindow)
	s.schedule(h, evLoaded, s.uniform(s.p.Telemetry))
	return true
}

// endTrial: host h's trial of the channel's version is over (it passed
// its health window, was reverted or rolled back). With one trial at a
// time, a version another channel has for the host starts at once if the
// host saw it during the trial and staged it (the daemon polls as soon as
// it marks a trial good, when a staged version waits), else at its next
// check-in.
func (s *sim) endTrial(h int) {
	if s.trial == nil || s.trial[h] != uint8(s.c+1) {
		return
	}
	s.trial[h] = 0
	if s.flags[h]&fOffline != 0 || !s.pending(h) {
		return
	}
	for _, o := range s.chans {
		if o.flags[h]&(fPending|fWaited) == fPending|fWaited {
			s.put(h, 0, evAdopt, s.after(0))
			return
		}
	}
	s.checkIn(h)
}

// offline is the channel's part of host h going offline for off.
func (s *sim) offline(h int, off time.Duration) {
	if s.talking(h) {
		// Heard until now. A host that was not talking keeps the time it
		// was last heard, and its silence check.
		s.since[h] = int32(s.tick)
		if off > controller.DefaultSilence {
			s.scheduleSilence(h)
		}
	}
	s.flags[h] |= fOffline
}

// online is the channel's part of host h coming back.
func (s *sim) online(h int) {
	f := s.flags[h]
	s.flags[h] &^= fOffline
	if s.since[h] == unheard {
		s.since[h] = 0
		s.controlAtRisk++ // heard from at last: a control host
	}
	if f&fHealthDue != 0 {
		s.flags[h] &^= fHealthDue
		if s.state[h] == stNew && f&fFailed == 0 {
			s.flags[h] |= fHealthy // its first telemetry says so
			s.healthy++
			s.judge(h)
		}
	}
}

// handle is an event of host h on the channel.
func (s *sim) handle(h int, kind uint8) {
	f := s.flags[h]
	switch kind {
	case evRevert:
		if s.state[h] != stDown {
			return
		}
		s.state[h] = stReverted // the boot guard: back on last-known-good, quarantined
		s.down--
		s.schedule(h, evReport, s.uniform(s.p.Telemetry))
		s.endTrial(h)
	case evReport:
		if f&fOffline != 0 {
			s.schedule(h, evReport, s.p.Telemetry) // sent when back
			return
		}
		s.failTreated(h)
		if s.firstReport < 0 {
			s.firstReport = s.tick
		}
		if s.r != nil && f&fCanary != 0 {
			s.apply(s.r.CanaryFailure(s.counts, s.at(s.tick), fmt.Sprint(h), "reverted: load-crash"))
		}
	case evHealthy:
		// The health window is the host's own clock: the trial ends with
		// it, whatever the server hears.
		s.endTrial(h)
		if s.state[h] != stNew || f&(fFailed|fHealthy) != 0 {
			return
		}
		if f&fOffline != 0 {
			s.flags[h] |= fHealthDue // reported when back
			return
		}
		s.flags[h] |= fHealthy
		s.healthy++
		s.judge(h)
	case evLoaded:
		if s.state[h] != stNew || f&fLoaded != 0 {
			return
		}
		if f&fOffline != 0 {
			s.schedule(h, evLoaded, s.p.Telemetry) // sent when back
			return
		}
		s.flags[h] |= fLoaded
		if slices.Contains(s.waveHosts, h) {
			s.waveLoaded++
		}
	case evSilence:
		// Unheard for the silence window: a failure on whichever side the
		// host is (the controller judges silence alike on both); a host
		// that took the version is treated, whatever it runs now.
		silent := !s.talking(h) && s.tick-int(s.since[h]) > s.ticks(controller.DefaultSilence)
		switch {
		case !silent:
		case s.state[h] != stOld:
			if s.failTreated(h) {
				s.treatedSilent++
			}
		case f&fCtrlFailed == 0:
			s.failControl(h)
			s.controlSilent++
		}
	case evRollback:
		if s.state[h] != stNew {
			return
		}
		if f&fOffline != 0 {
			return // evOnline rolls it back
		}
		s.rollbackHost(h)
	}
}

// failTreated counts host h's failure on the new version, once; it
// reports whether this was the first.
func (s *sim) failTreated(h int) bool {
	if s.flags[h]&fFailed != 0 {
		return false
	}
	s.flags[h] |= fFailed
	s.treatedAtRisk--
	s.treatedFail++
	if s.flags[h]&fHealthy != 0 {
		s.healthy--
	}
	return true
}

// failControl counts control host h's failure (it is not counted yet).
func (s *sim) failControl(h int) {
	s.flags[h] |= fCtrlFailed
	s.controlAtRisk--
	s.controlFail++
}

func (s *sim) rollbackHost(h int) {
	s.state[h] = stReverted
	s.running--
	s.endTrial(h)
}

// counts is what the server's fleet walk would count now.
func (s *sim) counts() controller.Counts {
	stageHosts := int64(0)
	if s.r != nil {
		lim := rollout.Stage{Percent: s.r.Stages[s.r.Stage].Percent}.BucketLimit()
		stageHosts = int64(float64(s.p.Hosts) * float64(lim) / rollout.Buckets)
		if s.canary {
			stageHosts += int64(s.p.Canaries)
		}
		stageHosts = int64(float64(stageHosts) * (1 - s.p.Offline))
	}
	p0, sampled := s.healthP0()
	var waveHosts int64
	for _, h := range s.waveHosts {
		// heard from within the silence window, as the controller counts
		if s.talking(h) || s.since[h] != unheard && s.tick-int(s.since[h]) <= s.ticks(controller.DefaultSilence) {
			waveHosts++
		}
	}
	return controller.Counts{
		TreatedJudged: s.judged, TreatedUnhealthy: s.unhealthy, HealthP0: p0, ControlSampled: sampled,
		WaveHosts: waveHosts, WaveLoaded: s.waveLoaded,
		TreatedAtRisk: s.treatedAtRisk, ControlAtRisk: s.controlAtRisk,
		TreatedFailures: s.treatedFail, ControlFailures: s.controlFail,
		TreatedSilent: s.treatedSilent, ControlSilent: s.controlSilent,
		Treated: s.treatedAtRisk + s.treatedFail, Control: s.controlAtRisk + s.controlFail,
		Healthy: s.healthy, StageHosts: stageHosts,
	}
}

// apply carries out the controller's decisions on the plan.
func (s *sim) apply(ds []controller.Decision) {
	for _, d := range ds {
		now := time.Duration(s.tick) * s.p.Resolution
		switch d.Kind {
		case controller.KindAdvance, controller.KindPromote:
			s.includeStage(s.r.Stage)
		case controller.KindWave:
			// The rest of the canary group.
			for h := range s.p.Canaries {
				s.offer(h)
			}
			s.waveHosts, s.waveLoaded = nil, 0
		case controller.KindHalt:
			s.stopped = true
			s.res.Halted = true
			s.res.HaltAfter = now
			if s.firstReport >= 0 {
				s.res.HaltAfterReport = time.Duration(s.tick-s.firstReport) * s.p.Resolution
			}
		case controller.KindRollback:
			s.stopped, s.rolled = true, true
			// Hosts on the new version take the rollback plan at their next
			// check-in (offline ones when they are back).
			for h, st := range s.state {
				if st == stNew {
					s.schedule(h, evRollback, s.uniform(s.p.CheckIn))
				}
			}
		}
	}
}

package fleetsim

import (
	"math"
	"time"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/wire"
)

// This file is the model of the agents' health figures: each host has its
// own level of each figure (a busy server burns more CPU and sees more
// events than an idle laptop, for good), lognormal across the fleet and
// the same on either version, and each sample adds noise to it. The
// controls' samples set the limits through the controller's own code
// (controller.HealthHistogram), and a treated host is judged once, with
// the sample it sends when its health window ends, as the server does.

// A host's usual figures: the fleet's median and the spread (sigma of the
// log) of each, and the noise of one sample.
var healthModel = [4]struct{ median, sigma float64 }{
	{0.02, 0.5},  // CPU, cores
	{200e6, 0.3}, // resident memory, bytes
	{50, 0.4},    // latency p99, microseconds
	{100, 0.7},   // events per second
}

const (
	sampleNoise  = 0.1     // sigma of the log of one sample around the host's level
	healthWindow = 60.0    // seconds a sample covers
	leakPerHour  = 1.0     // memory-leak: the agent grows by its usual size every hour
	controlDraws = 200_000 // controls drawn to set the limits
)

// health is the fleet's health test state: the limits the controls set and
// the share of controls beyond them.
type health struct {
	limits *controller.HealthLimits
	bad    float64 // the share of controls found unhealthy against limits
}

// level is host h's usual value of figure i: the same whichever version
// runs, drawn from a hash so that ten million hosts need no memory.
func (f *fleet) level(h, i int) float64 {
	x := splitmix(f.p.Seed ^ uint64(h)*0x9e3779b97f4a7c15 ^ uint64(i+1)*0xbf58476d1ce4e5b9)
	u1 := (float64(x>>11) + 0.5) / (1 << 53)
	u2 := float64(splitmix(x)>>11) / (1 << 53)
	z := math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
	return healthModel[i].median * math.Exp(healthModel[i].sigma*z)
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// sample is a health sample of host h: on the new version under the
// scenario when treated, age after it loaded it.
func (f *fleet) sample(h int, treated bool, age time.Duration) *wire.Health {
	var v [4]float64
	for i := range v {
		v[i] = f.level(h, i) * math.Exp(sampleNoise*f.rng.NormFloat64())
	}
	if treated {
		switch f.p.Scenario {
		case CPUDouble:
			v[0] *= 2
		case SilentSensor:
			v[3] = 0
		case MemoryLeak:
			v[1] *= 1 + leakPerHour*age.Hours()
		}
	}
	return &wire.Health{Seconds: healthWindow, CPU: v[0], RSS: uint64(v[1]), LatencyMicros: v[2], Events: uint64(math.Round(v[3] * healthWindow))}
}

// setupHealth draws controls' samples through the controller's histogram
// for the limits, and as many again for the share found beyond them.
func (f *fleet) setupHealth() {
	if !f.p.Health {
		return
	}
	n := min(f.p.Hosts, controlDraws)
	var hg controller.HealthHistogram
	for range n {
		hg.Add(f.sample(f.rng.IntN(f.p.Hosts), false, 0))
	}
	f.health.limits = hg.Limits()
	bad := 0
	for range n {
		if f.health.limits.Unhealthy(f.sample(f.rng.IntN(f.p.Hosts), false, 0)) != "" {
			bad++
		}
	}
	f.health.bad = float64(bad) / float64(n)
}

// judge is the health test's judgement of treated host h, once, with the
// sample it sends when its health window ends.
func (s *sim) judge(h int) {
	if s.health.limits == nil || s.state[h] != stNew || s.flags[h]&fFailed != 0 {
		return
	}
	s.judged++
	if s.health.limits.Unhealthy(s.sample(h, true, s.p.HealthWindow)) != "" {
		s.unhealthy++
		if s.firstReport < 0 {
			s.firstReport = s.tick
		}
	}
}

// healthP0 is the bound the server would use now: the share of controls
// found unhealthy among the controls heard from.
func (s *sim) healthP0() (float64, int64) {
	if s.health.limits == nil || s.controlAtRisk == 0 {
		return 0, 0
	}
	n := s.controlAtRisk
	return controller.HealthP0(int64(math.Round(s.health.bad*float64(n))), n), n
}

package controller

import (
	"math"
	"time"

	"github.com/ringfence/ringfence/wire"
)

// This file is the health test's part of the fleet walk: the controls'
// health figures set the limits, and each treated host is judged against
// them once, at the end of its health window. docs/gate.md says why the
// judgement is Bernoulli evidence with the gate's guarantee.

// hostHealth is a host's last health sample (wire.Health), as rates. It is
// soft state: hosts send one with every batch, so a leader that starts
// without it has it again within a telemetry interval.
//
// It lies in the host's record (no pointer, no allocation per batch): 24
// bytes of the leader's memory per host.
type hostHealth struct {
	at int64 // when it came, Unix nanoseconds; 0: no sample
	m  [healthMetrics]float32
}

// The figures the health test compares, in HealthLimits order.
const (
	metricCPU     = iota // cores
	metricRSS            // bytes
	metricLatency        // microseconds, 99th percentile
	metricEvents         // events per second: too few is unhealthy
	healthMetrics
)

var metricNames = [healthMetrics]string{"cpu", "rss", "latency", "events"}

func healthOf(w *wire.Health, at time.Time) *hostHealth {
	if w == nil || w.Check() != nil {
		return nil
	}
	return &hostHealth{at: at.UnixNano(), m: [healthMetrics]float32{float32(w.CPU), float32(w.RSS), float32(w.LatencyMicros), float32(float64(w.Events) / w.Seconds)}}
}

// HealthLimits are the health test's limits, set from the controls' figures
// at one evaluation and applied at the next: a host is unhealthy when its
// CPU, memory or latency is above its limit, or its event rate below.
type HealthLimits struct {
	CPU      float64 `json:"cpu"`
	RSS      float64 `json:"rss"`
	Latency  float64 `json:"latency_us"`
	Events   float64 `json:"events_per_s"`
	Controls int64   `json:"controls"` // the controls they were drawn from
}

// Limits are drawn at these quantiles of the controls' figures and widened
// by limitMargin: a host is unhealthy only well beyond what the controls
// show, so that a noisy figure does not flag healthy hosts, while a whole
// fold of a regression (CPU doubled, events stopped) still shows.
const (
	limitQuantile = 0.0025
	limitMargin   = 1.25
)

func (l *HealthLimits) limit(i int) float64 {
	switch i {
	case metricCPU:
		return l.CPU
	case metricRSS:
		return l.RSS
	case metricLatency:
		return l.Latency
	}
	return l.Events
}

// unhealthy returns the first figure of h beyond the limits, or -1.
func (l *HealthLimits) unhealthy(h *hostHealth) int {
	for i := range healthMetrics {
		v, lim := float64(h.m[i]), l.limit(i)
		if i == metricEvents {
			if v < lim {
				return i
			}
		} else if v > lim {
			return i
		}
	}
	return -1
}

// HealthHistogram draws health limits from samples outside a fleet walk
// (the fleet simulator's controls), with the walk's own code.
type HealthHistogram struct{ h histogram }

// Add counts a control's sample (one outside the bounds is left out).
func (hg *HealthHistogram) Add(w *wire.Health) {
	if hh := healthOf(w, time.Time{}); hh != nil {
		hg.h.add(hh)
	}
}

// Limits are the limits the samples added so far set (nil: none added).
func (hg *HealthHistogram) Limits() *HealthLimits { return hg.h.limits() }

// Unhealthy names the figure of w beyond l ("" when none is, or w is no
// valid sample).
func (l *HealthLimits) Unhealthy(w *wire.Health) string {
	hh := healthOf(w, time.Time{})
	if hh == nil {
		return ""
	}
	if i := l.unhealthy(hh); i >= 0 {
		return metricNames[i]
	}
	return ""
}

// HealthP0 is the bound the walk uses on a healthy host's chance of being
// found unhealthy, from bad of n controls found so.
func HealthP0(bad, n int64) float64 { return healthP0(bad, n) }

// histogram counts figures in log-scale buckets, histBuckets per octave
// from 2^-histLow: a quantile of a million hosts' figures in one pass and
// a few kilobytes.
type histogram struct {
	n       int64
	buckets [healthMetrics][histBuckets * histOctaves]int64
}

const (
	histSample  = 1 << 17
	histBuckets = 8
	histOctaves = 72
	histLow     = 32
)

func (hg *histogram) add(h *hostHealth) {
	hg.n++
	for i, v := range h.m {
		hg.buckets[i][bucketOf(v)]++
	}
}

// bucketOf is v's bucket, read off its float32 bits: the exponent is the
// octave, the top three bits of the mantissa the eighth of it (no
// logarithm: a million hosts' figures every evaluation).
func bucketOf(v float32) int {
	if !(v > 0) {
		return 0
	}
	bits := math.Float32bits(v)
	e, k := int(bits>>23)-127, int(bits>>20)&(histBuckets-1)
	return min(max((e+histLow)*histBuckets+k, 1), histBuckets*histOctaves-1)
}

// edge is the lower (or upper) edge of bucket b.
func edge(b int, upper bool) float64 {
	if b == 0 && !upper {
		return 0
	}
	if upper {
		b++
	}
	return math.Ldexp(1+float64(b%histBuckets)/histBuckets, b/histBuckets-histLow)
}

// limits draws the next limits from the controls counted. A quantile is
// the edge of its bucket on the safe side (above for the upper figures,
// below for the event rate), so a limit never lies inside the controls'
// tail it is meant to stand beyond.
func (hg *histogram) limits() *HealthLimits {
	if hg.n == 0 {
		return nil
	}
	k := int64(math.Ceil(limitQuantile * float64(hg.n))) // hosts in each tail
	q := func(i int, upper bool) float64 {
		bs := &hg.buckets[i]
		var seen int64
		if upper {
			for b := len(bs) - 1; b >= 0; b-- {
				if seen += bs[b]; seen >= k {
					return edge(b, true)
				}
			}
			return edge(0, true)
		}
		for b := range bs {
			if seen += bs[b]; seen >= k {
				return edge(b, false)
			}
		}
		return 0
	}
	return &HealthLimits{CPU: q(metricCPU, true) * limitMargin, RSS: q(metricRSS, true) * limitMargin, Latency: q(metricLatency, true) * limitMargin,
		Events: q(metricEvents, false) / limitMargin, Controls: hg.n}
}

// healthP0 bounds the chance that a host of the controls' kind is found
// unhealthy, from bad of n controls found so against the same limits now:
// (bad+1)/(n+1), the rank bound of a new host exchangeable with them.
func healthP0(bad, n int64) float64 {
	if n == 0 {
		return 0
	}
	return float64(bad+1) / float64(n+1)
}

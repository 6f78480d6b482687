// Package gate is the rollout server's halt test: it decides, from failures
// seen so far, whether hosts on the new version ("treated") fail more often
// than hosts still on the old one ("controls") over the same time.
//
// The test conditions on failures. If the new version is no worse, each
// failure falls among the treated with probability q, the treated share of
// the hosts at risk when it happens. If the treated fail rho times as often,
// that probability is theta = rho*q / (rho*q + 1 - q). For each rho in a
// fixed grid the gate keeps the log likelihood ratio L_rho, the sum over
// failures of log(theta/q) for a treated failure and log((1-theta)/(1-q))
// for a control one. Because q is known before the failure happens, each
// exp(L_rho), and so their equal-weight mean M, is a nonnegative martingale
// with mean 1 when the new version is no worse, and Ville's inequality gives
// P(M ever reaches 1/alpha) <= alpha. The gate halts when M >= 1/alpha. That
// is one alpha for a whole rollout, across all its stages, however often the
// server evaluates: looking more often does not raise the false-halt rate.
// With no controls left q is near 1 and failures carry almost no evidence,
// which is right: there is nothing to compare against. docs/gate.md is the
// operator's account.
package gate

import (
	"fmt"
	"math"
)

// minShare and maxShare clamp the treated share q so that log(theta/q) and
// log((1-theta)/(1-q)) stay finite when one group is empty.
const (
	minShare = 1e-12
	maxShare = 1 - 1e-12
)

// Params are the parameters of the test. The zero value is not usable: use
// Default() or fill both fields, and call Check.
type Params struct {
	// Alpha bounds the probability of a false halt over a whole rollout,
	// e.g. 0.001.
	Alpha float64 `json:"alpha"`
	// Ratios are the alternative failure-rate ratios (treated hazard over
	// control hazard), each > 1, weighted equally.
	Ratios []float64 `json:"ratios"`
}

// Default returns Alpha 0.001 and the ratio grid 1.5, 2, 3, 5, 10, 30, 100,
// 1000: from a subtle regression to content that crashes every host.
func Default() Params {
	return Params{
		Alpha:  0.001,
		Ratios: []float64{1.5, 2, 3, 5, 10, 30, 100, 1000},
	}
}

// Check reports the first thing wrong with p, naming the field and saying
// what to use instead.
func (p Params) Check() error {
	if !(p.Alpha > 0 && p.Alpha <= 0.5) {
		return fmt.Errorf("gate: alpha %v is outside (0, 0.5]: it bounds the false-halt probability of a whole rollout; use a small value such as 0.001 (the default)", p.Alpha)
	}
	if len(p.Ratios) == 0 {
		return fmt.Errorf("gate: ratios is empty: give at least one failure-rate ratio > 1, or use the default grid %v", Default().Ratios)
	}
	for i, r := range p.Ratios {
		if !(r > 1) || math.IsInf(r, 1) {
			return fmt.Errorf("gate: ratios[%d] is %v: each ratio must be a finite number > 1 (how many times more often treated hosts fail under the alternative)", i, r)
		}
	}
	return nil
}

// State is the running evidence: one log likelihood ratio per ratio of the
// Params that built it, in the same order. The server persists it as JSON
// between evaluations; a State is only meaningful with the Params it was
// built with.
type State struct {
	// LogLR[i] is the natural log of the likelihood ratio for Ratios[i].
	LogLR []float64 `json:"log_lr"`
	// Treated and Control count the failures seen so far, for display.
	Treated int64 `json:"treated_failures"`
	Control int64 `json:"control_failures"`
}

// Batch is what happened since the last update.
type Batch struct {
	// TreatedFailures and ControlFailures count failures in each group.
	TreatedFailures, ControlFailures int64
	// TreatedAtRisk and ControlAtRisk count the hosts at risk in each group
	// when the batch began. Hosts moved into the treated group during a
	// batch are not counted, so the caller should end a batch (call Update)
	// whenever it moves hosts: too few treated at risk overstates the
	// evidence against the new version.
	TreatedAtRisk, ControlAtRisk int64
}

// Update adds b to the evidence in s. It allocates s.LogLR on first use
// (len(p.Ratios) entries) and does not allocate after that. Negative counts
// are treated as 0. A batch with no hosts at risk still counts its failures
// for display but adds no evidence, since the treated share is undefined.
// Update panics if s.LogLR was built for a different number of ratios:
// evidence gathered under other Params cannot be carried over.
func (p Params) Update(s *State, b Batch) {
	if len(s.LogLR) == 0 {
		s.LogLR = make([]float64, len(p.Ratios))
	}
	if len(s.LogLR) != len(p.Ratios) {
		panic(fmt.Sprintf("gate: state has %d log likelihood ratios but params have %d ratios", len(s.LogLR), len(p.Ratios)))
	}
	x, y := max(b.TreatedFailures, 0), max(b.ControlFailures, 0)
	s.Treated += x
	s.Control += y
	nt, nc := float64(max(b.TreatedAtRisk, 0)), float64(max(b.ControlAtRisk, 0))
	if nt+nc == 0 || x+y == 0 {
		return
	}
	q := min(max(nt/(nt+nc), minShare), maxShare)
	fx, fn := float64(x), float64(x+y)
	for i, rho := range p.Ratios {
		// With d = log(rho*q + 1 - q): log(theta/q) = log(rho) - d and
		// log((1-theta)/(1-q)) = -d. Log1p keeps d exact for small q.
		d := math.Log1p((rho - 1) * q)
		inc := -fn * d
		if x > 0 {
			inc += fx * math.Log(rho)
		}
		s.LogLR[i] += inc
	}
}

// Result is an evaluation of the evidence.
type Result struct {
	// Statistic is log10 of the mixture likelihood ratio M (0 with no
	// evidence; negative when the evidence favours the new version).
	Statistic float64 `json:"statistic"`
	// Threshold is log10(1/alpha).
	Threshold float64 `json:"threshold"`
	// Reject reports whether Statistic >= Threshold: halt the rollout.
	Reject bool `json:"reject"`
}

// Evaluate returns the statistic for s and whether it calls for a halt. It
// does not allocate. M is computed in log space, so no amount of evidence
// overflows it.
func (p Params) Evaluate(s State) Result {
	thr := -math.Log10(p.Alpha)
	stat := 0.0 // an empty State: M = 1
	if n := len(s.LogLR); n > 0 {
		m := math.Inf(-1)
		for _, l := range s.LogLR {
			m = max(m, l)
		}
		var sum float64
		for _, l := range s.LogLR {
			sum += math.Exp(l - m)
		}
		stat = (m + math.Log(sum/float64(n))) / math.Ln10
	}
	return Result{Statistic: stat, Threshold: thr, Reject: stat >= thr}
}

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
	// Expected is how many treated failures the evidence would hold if
	// the new version were no worse (Batch.Expected, summed): how much the
	// gate has seen. The health test counts judged hosts in Treated (found
	// unhealthy) and Control (found healthy).
	Expected float64 `json:"expected,omitempty"`
	// Promote is the promotion test's evidence (Promotion), natural log.
	Promote float64 `json:"promote,omitempty"`
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
	s.Expected += b.Expected()
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

// Expected returns how many of a batch's failures would have been treated
// ones if the new version were no worse: (failures) * q. Summed over a
// rollout it says how much the gate has seen: a regression of ratio rho
// would have shown about rho times as many treated failures.
func (b Batch) Expected() float64 {
	nt, nc := float64(max(b.TreatedAtRisk, 0)), float64(max(b.ControlAtRisk, 0))
	if nt+nc == 0 {
		return 0
	}
	return float64(max(b.TreatedFailures, 0)+max(b.ControlFailures, 0)) * nt / (nt + nc)
}

// Judged is a batch of the health test: treated hosts judged once each,
// Bad of them found unhealthy. P0 bounds the probability that a treated
// host is found unhealthy if the new version is no worse: the controls'
// rate of the same finding at the same time (docs/gate.md).
type Judged struct {
	N, Bad int64
	P0     float64
}

// UpdateJudged adds j to the evidence in s: for each ratio rho of the grid
// the alternative is that a treated host is found unhealthy with
// probability min(rho*P0, maxShare) instead of at most P0. Each term is a
// nonnegative supermartingale when the new version is no worse, so the
// mixture keeps the gate's guarantee (Evaluate halts with probability at
// most alpha). A batch with P0 outside (0, 1) adds no evidence.
func (p Params) UpdateJudged(s *State, j Judged) {
	if len(s.LogLR) == 0 {
		s.LogLR = make([]float64, len(p.Ratios))
	}
	if len(s.LogLR) != len(p.Ratios) {
		panic(fmt.Sprintf("gate: state has %d log likelihood ratios but params have %d ratios", len(s.LogLR), len(p.Ratios)))
	}
	n, x := max(j.N, 0), min(max(j.Bad, 0), max(j.N, 0))
	s.Treated += x
	s.Control += n - x
	if n == 0 || !(j.P0 > 0 && j.P0 < 1) {
		return
	}
	p0 := min(max(j.P0, minShare), maxShare)
	s.Expected += float64(n) * p0
	for i, rho := range p.Ratios {
		p1 := min(rho*p0, maxShare)
		if p1 <= p0 {
			continue
		}
		s.LogLR[i] += float64(x)*math.Log(p1/p0) + float64(n-x)*(math.Log1p(-p1)-math.Log1p(-p0))
	}
}

// Promotion is the test the other way: does the evidence show that the
// new version is not worse than the controls by more than Margin? It
// keeps the likelihood ratio of "no worse" (rho = 1) against "worse by the
// margin" (rho = Margin). That ratio is a nonnegative supermartingale when
// the new version is Margin times worse or more, so by Ville's inequality
// it reaches 1/Beta with probability at most Beta: a stage promoted early
// on it was, with probability 1-Beta, not promoted on content worse than
// the margin. It decides only how soon a stage may advance; halts are the
// halt test's, whose bound it does not touch.
type Promotion struct {
	// Margin is the failure-rate ratio the new version must be shown to
	// stay below (> 1).
	Margin float64 `json:"margin"`
	// Beta bounds the probability of promoting content Margin times worse
	// or more, per test (in (0, 0.5]).
	Beta float64 `json:"beta"`
	// Off keeps every stage to its bake time.
	Off bool `json:"off,omitempty"`
}

// DefaultPromotion returns Margin 2 and Beta 0.05.
func DefaultPromotion() Promotion { return Promotion{Margin: 2, Beta: 0.05} }

// Check reports the first thing wrong with p.
func (p Promotion) Check() error {
	if p.Off {
		return nil
	}
	if !(p.Margin > 1) || math.IsInf(p.Margin, 1) {
		return fmt.Errorf("gate: promotion margin %v: want a finite ratio > 1 (how much worse than the controls content may be and still be promoted early); the default is %v", p.Margin, DefaultPromotion().Margin)
	}
	if !(p.Beta > 0 && p.Beta <= 0.5) {
		return fmt.Errorf("gate: promotion beta %v is outside (0, 0.5]; the default is %v", p.Beta, DefaultPromotion().Beta)
	}
	return nil
}

// Update adds b to the promotion evidence *logLR (natural log).
func (p Promotion) Update(logLR *float64, b Batch) {
	x, y := max(b.TreatedFailures, 0), max(b.ControlFailures, 0)
	nt, nc := float64(max(b.TreatedAtRisk, 0)), float64(max(b.ControlAtRisk, 0))
	if nt+nc == 0 || x+y == 0 {
		return
	}
	q := min(max(nt/(nt+nc), minShare), maxShare)
	// theta(rho) = rho*q/(rho*q+1-q); for rho = 1 it is q. The ratio of
	// "no worse" to "Margin times worse": per treated failure
	// log(q/theta_m) = log(d_m) - log(m), per control failure
	// log((1-q)/(1-theta_m)) = log(d_m), with d_m = m*q + 1 - q.
	d := math.Log1p((p.Margin - 1) * q)
	*logLR += float64(x+y)*d - float64(x)*math.Log(p.Margin)
}

// UpdateJudged adds a batch of the health test to the promotion evidence:
// "unhealthy with probability P0" against "with Margin*P0".
func (p Promotion) UpdateJudged(logLR *float64, j Judged) {
	n, x := max(j.N, 0), min(max(j.Bad, 0), max(j.N, 0))
	if n == 0 || !(j.P0 > 0 && j.P0 < 1) {
		return
	}
	p0 := min(max(j.P0, minShare), maxShare)
	p1 := min(p.Margin*p0, maxShare)
	*logLR += -float64(x)*math.Log(p1/p0) + float64(n-x)*(math.Log1p(-p0)-math.Log1p(-p1))
}

// Passed reports whether the promotion evidence logLR reached 1/Beta
// (never when the test is Off).
func (p Promotion) Passed(logLR float64) bool { return !p.Off && logLR >= -math.Log(p.Beta) }

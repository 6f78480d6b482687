package gate_test

import (
	"encoding/json"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/gate"
)

// lr is the likelihood ratio of x treated and y control failures at treated
// share q under ratio rho, computed directly from theta (not in log space,
// as gate does), so that the tests check gate against the definition.
func lr(rho, q float64, x, y int) float64 {
	theta := rho * q / (rho*q + 1 - q)
	return math.Pow(theta/q, float64(x)) * math.Pow((1-theta)/(1-q), float64(y))
}

// mixture returns log10 of the mean over ratios of f(rho).
func mixture(ratios []float64, f func(rho float64) float64) float64 {
	var sum float64
	for _, rho := range ratios {
		sum += f(rho)
	}
	return math.Log10(sum / float64(len(ratios)))
}

func TestKnownValues(t *testing.T) {
	ratios := gate.Default().Ratios
	tests := []struct {
		name             string
		batches          []gate.Batch
		want             float64 // Statistic
		treated, control int64
	}{{
		name:    "one treated failure at q=0.5",
		batches: []gate.Batch{{TreatedFailures: 1, TreatedAtRisk: 100, ControlAtRisk: 100}},
		want:    mixture(ratios, func(rho float64) float64 { return lr(rho, 0.5, 1, 0) }),
		treated: 1,
	}, {
		name:    "one control failure at q=0.5",
		batches: []gate.Batch{{ControlFailures: 1, TreatedAtRisk: 100, ControlAtRisk: 100}},
		want:    mixture(ratios, func(rho float64) float64 { return lr(rho, 0.5, 0, 1) }),
		control: 1,
	}, {
		name:    "three treated and two control failures at q=0.1",
		batches: []gate.Batch{{TreatedFailures: 3, ControlFailures: 2, TreatedAtRisk: 100, ControlAtRisk: 900}},
		want:    mixture(ratios, func(rho float64) float64 { return lr(rho, 0.1, 3, 2) }),
		treated: 3, control: 2,
	}, {
		name: "batches at different shares multiply",
		batches: []gate.Batch{
			{TreatedFailures: 1, ControlFailures: 4, TreatedAtRisk: 5, ControlAtRisk: 995},
			{TreatedFailures: 2, ControlFailures: 1, TreatedAtRisk: 500, ControlAtRisk: 500},
		},
		want: mixture(ratios, func(rho float64) float64 {
			return lr(rho, 0.005, 1, 4) * lr(rho, 0.5, 2, 1)
		}),
		treated: 3, control: 5,
	}, {
		name:    "no failures",
		batches: []gate.Batch{{TreatedAtRisk: 100, ControlAtRisk: 100}},
		want:    0,
	}, {
		name:    "no hosts at risk: counted, but no evidence",
		batches: []gate.Batch{{TreatedFailures: 5, ControlFailures: 1}},
		want:    0,
		treated: 5, control: 1,
	}, {
		name:    "negative failure counts are zero",
		batches: []gate.Batch{{TreatedFailures: -5, ControlFailures: -3, TreatedAtRisk: 10, ControlAtRisk: 10}},
		want:    0,
	}, {
		name:    "negative hosts at risk are zero",
		batches: []gate.Batch{{TreatedFailures: 1, TreatedAtRisk: -10, ControlAtRisk: 10}},
		want:    mixture(ratios, func(rho float64) float64 { return lr(rho, 1e-12, 1, 0) }),
		treated: 1,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := gate.Default()
			var s gate.State
			for _, b := range tt.batches {
				p.Update(&s, b)
			}
			require.Len(t, s.LogLR, len(ratios))
			r := p.Evaluate(s)
			require.InDelta(t, tt.want, r.Statistic, 1e-12)
			require.InDelta(t, 3, r.Threshold, 1e-12)
			require.False(t, r.Reject)
			require.Equal(t, tt.treated, s.Treated)
			require.Equal(t, tt.control, s.Control)
		})
	}
}

func TestEvidence(t *testing.T) {
	tests := []struct {
		name  string
		check func(t *testing.T, p gate.Params)
	}{{
		name: "empty state",
		check: func(t *testing.T, p gate.Params) {
			require.Equal(t, gate.Result{Statistic: 0, Threshold: 3}, p.Evaluate(gate.State{}))
		},
	}, {
		name: "control failures never raise the statistic above 0",
		check: func(t *testing.T, p gate.Params) {
			rng := rand.New(rand.NewPCG(1, 2))
			var s gate.State
			for range 1000 {
				p.Update(&s, gate.Batch{
					ControlFailures: rng.Int64N(50),
					TreatedAtRisk:   rng.Int64N(1_000_000),
					ControlAtRisk:   rng.Int64N(1_000_000),
				})
				require.LessOrEqual(t, p.Evaluate(s).Statistic, 0.0)
			}
		},
	}, {
		name: "no controls gives almost no evidence",
		check: func(t *testing.T, p gate.Params) {
			var s gate.State
			p.Update(&s, gate.Batch{TreatedFailures: 1_000_000, TreatedAtRisk: 1_000_000})
			r := p.Evaluate(s)
			require.GreaterOrEqual(t, r.Statistic, 0.0)
			require.Less(t, r.Statistic, 1e-5)
		},
	}, {
		name: "a batch is the same as its failures one at a time",
		check: func(t *testing.T, p gate.Params) {
			var batch, single gate.State
			b := gate.Batch{TreatedFailures: 7, ControlFailures: 13, TreatedAtRisk: 300, ControlAtRisk: 9700}
			p.Update(&batch, b)
			for i := range b.TreatedFailures + b.ControlFailures {
				one := gate.Batch{TreatedFailures: 1, TreatedAtRisk: b.TreatedAtRisk, ControlAtRisk: b.ControlAtRisk}
				if i >= b.TreatedFailures {
					one.TreatedFailures, one.ControlFailures = 0, 1
				}
				p.Update(&single, one)
			}
			require.InDeltaSlice(t, batch.LogLR, single.LogLR, 1e-9)
			require.Equal(t, batch.Treated, single.Treated)
			require.Equal(t, batch.Control, single.Control)
		},
	}, {
		name: "huge evidence does not overflow",
		check: func(t *testing.T, p gate.Params) {
			var s gate.State
			p.Update(&s, gate.Batch{TreatedFailures: 1_000_000, TreatedAtRisk: 1000, ControlAtRisk: 1000})
			r := p.Evaluate(s)
			// Only rho = 1000 contributes: exp(L) for the others is
			// exp(-1e5) or less relative to it.
			want := (1e6*math.Log(2*1000.0/1001) - math.Log(8)) / math.Ln10
			require.InEpsilon(t, want, r.Statistic, 1e-9)
			require.True(t, r.Reject)
		},
	}, {
		name: "reject exactly at the threshold",
		check: func(t *testing.T, _ gate.Params) {
			p := gate.Params{Alpha: 0.01, Ratios: []float64{2, 3}}
			for _, tc := range []struct {
				logLR  float64
				reject bool
			}{{math.Log(100) - 1e-9, false}, {math.Log(100) + 1e-9, true}} {
				r := p.Evaluate(gate.State{LogLR: []float64{tc.logLR, tc.logLR}})
				require.InDelta(t, 2, r.Threshold, 1e-12)
				require.Equal(t, tc.reject, r.Reject, "log LR %v", tc.logLR)
			}
		},
	}, {
		name: "state built for other params panics",
		check: func(t *testing.T, p gate.Params) {
			s := gate.State{LogLR: []float64{0, 0}}
			require.PanicsWithValue(t, "gate: state has 2 log likelihood ratios but params have 8 ratios", func() {
				p.Update(&s, gate.Batch{TreatedFailures: 1, TreatedAtRisk: 1, ControlAtRisk: 1})
			})
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.check(t, gate.Default()) })
	}
}

func TestCheck(t *testing.T) {
	ratios := func(r ...float64) gate.Params { return gate.Params{Alpha: 0.001, Ratios: r} }
	tests := []struct {
		name    string
		params  gate.Params
		wantErr string // "" for none
	}{
		{"default", gate.Default(), ""},
		{"alpha 0.5", gate.Params{Alpha: 0.5, Ratios: []float64{2}}, ""},
		{"zero value", gate.Params{}, "gate: alpha 0 is outside (0, 0.5]"},
		{"negative alpha", gate.Params{Alpha: -0.01, Ratios: []float64{2}}, "alpha -0.01 is outside (0, 0.5]"},
		{"alpha above 0.5", gate.Params{Alpha: 0.6, Ratios: []float64{2}}, "alpha 0.6 is outside (0, 0.5]"},
		{"alpha NaN", gate.Params{Alpha: math.NaN(), Ratios: []float64{2}}, "alpha NaN is outside (0, 0.5]"},
		{"no ratios", ratios(), "gate: ratios is empty: give at least one failure-rate ratio > 1"},
		{"ratio 1", ratios(2, 1), "gate: ratios[1] is 1: each ratio must be a finite number > 1"},
		{"ratio below 1", ratios(0.5), "ratios[0] is 0.5: each ratio must be a finite number > 1"},
		{"infinite ratio", ratios(2, 3, math.Inf(1)), "ratios[2] is +Inf: each ratio must be a finite number > 1"},
		{"NaN ratio", ratios(math.NaN()), "ratios[0] is NaN: each ratio must be a finite number > 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.params.Check()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestJSON(t *testing.T) {
	p := gate.Default()
	var s gate.State
	p.Update(&s, gate.Batch{TreatedFailures: 3, ControlFailures: 11, TreatedAtRisk: 123, ControlAtRisk: 45678})
	p.Update(&s, gate.Batch{ControlFailures: 2, TreatedAtRisk: 1234, ControlAtRisk: 44567})

	tests := []struct {
		name string
		in   any
		keys []string
		out  func() any // a pointer to a fresh zero value
	}{
		{"state", s, []string{"log_lr", "treated_failures", "control_failures", "expected"}, func() any { return new(gate.State) }},
		{"params", p, []string{"alpha", "ratios"}, func() any { return new(gate.Params) }},
		{"result", p.Evaluate(s), []string{"statistic", "threshold", "reject"}, func() any { return new(gate.Result) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := json.Marshal(tt.in)
			require.NoError(t, err)
			var fields map[string]any
			require.NoError(t, json.Unmarshal(data, &fields))
			require.ElementsMatch(t, tt.keys, slices.Collect(maps.Keys(fields)))
			out := tt.out()
			require.NoError(t, json.Unmarshal(data, out))
			require.Equal(t, tt.in, reflect.ValueOf(out).Elem().Interface())
		})
	}

	t.Run("a persisted state continues exactly", func(t *testing.T) {
		data, err := json.Marshal(s)
		require.NoError(t, err)
		var restored gate.State
		require.NoError(t, json.Unmarshal(data, &restored))
		next := gate.Batch{TreatedFailures: 1, ControlFailures: 1, TreatedAtRisk: 5000, ControlAtRisk: 40000}
		live := gate.State{LogLR: slices.Clone(s.LogLR), Treated: s.Treated, Control: s.Control, Expected: s.Expected}
		p.Update(&live, next)
		p.Update(&restored, next)
		require.Equal(t, live, restored)
	})
}

func TestUpdateEvaluateDoNotAllocate(t *testing.T) {
	p := gate.Default()
	var s gate.State
	b := gate.Batch{TreatedFailures: 2, ControlFailures: 30, TreatedAtRisk: 10_000, ControlAtRisk: 990_000}
	p.Update(&s, b) // the first Update allocates LogLR
	allocs := testing.AllocsPerRun(100, func() {
		p.Update(&s, b)
		_ = p.Evaluate(s)
	})
	require.Zero(t, allocs)
}

// fleet is a simulated fleet: hosts, the treated share of each stage (ring)
// of a rollout, and how many steps each stage lasts. One step is one
// evaluation interval: the failures of a step are one Batch.
type fleet struct {
	hosts  int64
	shares []float64
	steps  int
}

// simFleet is the fleet of the simulations: 20,000 hosts, stages of 0.5%,
// 1%, 10%, 50% and 100%, 50 steps (evaluations) each.
func simFleet() fleet {
	return fleet{hosts: 20_000, shares: []float64{0.005, 0.01, 0.1, 0.5, 1}, steps: 50}
}

// scenario is how hosts fail. In each step a control host fails with
// probability background and a treated host with probability
// ratio*background (capped at 1). With crashOnLoad, every host that receives
// the update in a stage fails in the stage's first step instead. Hosts stay
// at risk after a failure (a failure is an event, like a sensor crash).
type scenario struct {
	background  float64
	ratio       float64
	crashOnLoad bool
}

// outcome is what happened in one simulated rollout.
type outcome struct {
	haltStep      int     // first step (from 1) at which the gate rejected; 0 if never
	exposed       int64   // treated hosts at haltStep
	maxStatistic  float64 // the largest Statistic seen
	naiveHaltStep int     // first step at which the naive z-test rejected; 0 if never
}

// rollout simulates one rollout of f under sc, evaluating the gate (and a
// naive fixed-sample z-test at one-sided level p.Alpha) after every step.
// It runs to the end even after a halt, so that maxStatistic covers the
// whole rollout. s is reset and reused, so the loop does not allocate.
func rollout(rng *rand.Rand, p gate.Params, f fleet, sc scenario, s *gate.State) outcome {
	clear(s.LogLR)
	s.Treated, s.Control = 0, 0
	o := outcome{maxStatistic: math.Inf(-1)}
	zCrit := math.Sqrt2 * math.Erfinv(1-2*p.Alpha)
	// The naive test: the score test of "each failure is treated with
	// probability q", valid at level alpha if looked at once.
	var obs, mean, variance float64
	step := 0
	prev := int64(0)
	for _, share := range f.shares {
		nt := int64(math.Round(share * float64(f.hosts)))
		nc := f.hosts - nt
		for k := range f.steps {
			step++
			var loaded int64
			if sc.crashOnLoad && k == 0 {
				loaded = nt - prev
			}
			b := gate.Batch{
				TreatedFailures: loaded + binomial(rng, nt-loaded, min(1, sc.ratio*sc.background)),
				ControlFailures: binomial(rng, nc, sc.background),
				TreatedAtRisk:   nt,
				ControlAtRisk:   nc,
			}
			p.Update(s, b)
			r := p.Evaluate(*s)
			o.maxStatistic = max(o.maxStatistic, r.Statistic)
			if r.Reject && o.haltStep == 0 {
				o.haltStep, o.exposed = step, nt
			}

			q := min(max(float64(nt)/float64(f.hosts), 1e-12), 1-1e-12)
			n := float64(b.TreatedFailures + b.ControlFailures)
			obs += float64(b.TreatedFailures)
			mean += n * q
			variance += n * q * (1 - q)
			if variance > 0 && (obs-mean)/math.Sqrt(variance) >= zCrit && o.naiveHaltStep == 0 {
				o.naiveHaltStep = step
			}
		}
		prev = nt
	}
	return o
}

// binomial draws from Binomial(n, p) by inversion, in chunks whose mean is
// at most 50 so that (1-p)^n stays far from underflow.
func binomial(rng *rand.Rand, n int64, p float64) int64 {
	switch {
	case n <= 0 || p <= 0:
		return 0
	case p >= 1:
		return n
	case p > 0.5:
		return n - binomial(rng, n, 1-p)
	}
	chunk := max(int64(min(50/p, float64(n))), 1)
	var k int64
	for n > 0 {
		m := min(n, chunk)
		n -= m
		u := rng.Float64()
		pk := math.Pow(1-p, float64(m))
		cdf := pk
		var j int64
		for u > cdf && j < m {
			pk *= float64(m-j) / float64(j+1) * p / (1 - p)
			j++
			cdf += pk
		}
		k += j
	}
	return k
}

// TestBinomial checks the simulations' sampler: its mean and variance.
func TestBinomial(t *testing.T) {
	const draws = 20_000
	tests := []struct {
		n int64
		p float64
	}{{100, 1e-3}, {20_000, 1e-4}, {19_900, 1e-3}, {10_000, 0.02}, {200, 0.9}, {50, 1}, {50, 0}}
	rng := rand.New(rand.NewPCG(7, 7))
	for _, tt := range tests {
		var sum, sq float64
		for range draws {
			k := binomial(rng, tt.n, tt.p)
			require.True(t, 0 <= k && k <= tt.n)
			sum += float64(k)
			sq += float64(k) * float64(k)
		}
		mean, v := float64(tt.n)*tt.p, float64(tt.n)*tt.p*(1-tt.p)
		gotMean := sum / draws
		gotVar := sq/draws - gotMean*gotMean
		require.InDelta(t, mean, gotMean, 5*math.Sqrt(v/draws)+1e-12, "n %d p %g: mean", tt.n, tt.p)
		require.InDelta(t, v, gotVar, 0.1*v+1e-12, "n %d p %g: variance", tt.n, tt.p)
	}
}

func TestFalseHaltRate(t *testing.T) {
	const rollouts = 2000
	tests := []struct {
		name       string
		background float64
		seed       uint64
	}{
		{"background 1e-5", 1e-5, 1},
		{"background 1e-4", 1e-4, 2},
		{"background 1e-3", 1e-3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := gate.Params{Alpha: 0.01, Ratios: gate.Default().Ratios}
			rng := rand.New(rand.NewPCG(tt.seed, 0x9a7e))
			sc := scenario{background: tt.background, ratio: 1}
			var s gate.State
			p.Update(&s, gate.Batch{}) // allocate LogLR
			var halts, halts001, naive int
			for range rollouts {
				o := rollout(rng, p, simFleet(), sc, &s)
				if o.haltStep > 0 {
					halts++
				}
				if o.maxStatistic >= 3 {
					halts001++
				}
				if o.naiveHaltStep > 0 {
					naive++
				}
			}
			rate := float64(halts) / rollouts
			upper := upperBound(halts, rollouts, 0.05)
			naiveRate := float64(naive) / rollouts
			t.Logf("%d healthy rollouts, %d hosts, background %g per host-step: false halts %d (%.4f, 95%% upper bound %.4f) at alpha 0.01, %d (%.4f) at alpha 0.001; naive z-test peeked every step %d (%.4f) at alpha 0.01",
				rollouts, simFleet().hosts, tt.background, halts, rate, upper, halts001, float64(halts001)/rollouts, naive, naiveRate)
			require.LessOrEqual(t, rate, p.Alpha, "false-halt rate above alpha")
			// And not by luck of the sample: the rate is below alpha
			// with 95% confidence.
			require.LessOrEqual(t, upper, p.Alpha, "false-halt rate not shown below alpha")
			require.Greater(t, naiveRate, rate, "the naive test should false-halt more often")
		})
	}
}

// upperBound is the one-sided Clopper-Pearson upper confidence bound, at
// level 1-beta, on a probability seen k times in n trials: the p at which
// P(X <= k) = beta for X ~ Binomial(n, p), found by bisection.
func upperBound(k, n int, beta float64) float64 {
	lg := func(x int) float64 { v, _ := math.Lgamma(float64(x) + 1); return v }
	cdf := func(p float64) float64 {
		var sum float64
		for i := 0; i <= k; i++ {
			sum += math.Exp(lg(n) - lg(i) - lg(n-i) + float64(i)*math.Log(p) + float64(n-i)*math.Log1p(-p))
		}
		return sum
	}
	lo, hi := float64(k)/float64(n), 1.0
	for range 100 {
		mid := (lo + hi) / 2
		if cdf(mid) > beta {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

func TestDetection(t *testing.T) {
	const rollouts = 1000
	tests := []struct {
		name     string
		sc       scenario
		seed     uint64
		wantRate float64 // the least share of rollouts that must halt
	}{
		{"ratio 10", scenario{background: 1e-4, ratio: 10}, 4, 0.9},
		{"ratio 3", scenario{background: 1e-4, ratio: 3}, 6, 0.9},
		{"ratio 2", scenario{background: 1e-4, ratio: 2}, 7, 0.5},
		// Logged for docs/gate.md, not asserted: with ~100 failures per
		// stage a 1.5x regression is mostly out of reach.
		{"ratio 1.5", scenario{background: 1e-4, ratio: 1.5}, 8, 0},
		{"crash on load", scenario{background: 1e-4, ratio: 1, crashOnLoad: true}, 5, 0.99},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := gate.Default()
			rng := rand.New(rand.NewPCG(tt.seed, 0xde7ec7))
			var s gate.State
			p.Update(&s, gate.Batch{})
			var steps []int
			var exposed []int64
			for range rollouts {
				o := rollout(rng, p, simFleet(), tt.sc, &s)
				if o.haltStep > 0 {
					steps = append(steps, o.haltStep)
					exposed = append(exposed, o.exposed)
				}
			}
			rate := float64(len(steps)) / rollouts
			slices.Sort(steps)
			slices.Sort(exposed)
			t.Logf("%d bad rollouts (%+v), alpha %g: detected %.4f; steps to detection median %d, p95 %d; treated hosts at detection median %d, p95 %d",
				rollouts, tt.sc, p.Alpha, rate, quantile(steps, 0.5), quantile(steps, 0.95), quantile(exposed, 0.5), quantile(exposed, 0.95))
			require.GreaterOrEqual(t, rate, tt.wantRate)
		})
	}
}

// quantile returns the nearest-rank q-quantile of sorted xs (0 if empty).
func quantile[T int | int64](xs []T, q float64) T {
	if len(xs) == 0 {
		return 0
	}
	return xs[max(int(math.Ceil(q*float64(len(xs))))-1, 0)]
}

func BenchmarkUpdateEvaluate(b *testing.B) {
	p := gate.Default()
	var s gate.State
	batch := gate.Batch{TreatedFailures: 2, ControlFailures: 30, TreatedAtRisk: 10_000, ControlAtRisk: 990_000}
	p.Update(&s, batch)
	b.ReportAllocs()
	for b.Loop() {
		p.Update(&s, batch)
		_ = p.Evaluate(s)
	}
}

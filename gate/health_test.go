package gate_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/gate"
)

// judgedRollout judges batches of treated hosts, each unhealthy with
// probability p, against the bound p0, and reports whether the health
// test ever reached its threshold and whether the promotion test passed.
func judgedRollout(rng *rand.Rand, p gate.Params, pr gate.Promotion, p0, prob float64) (halted, promoted bool) {
	var s gate.State
	for range 40 {
		n := int64(5 + rng.IntN(100))
		var bad int64
		for range n {
			if rng.Float64() < prob {
				bad++
			}
		}
		j := gate.Judged{N: n, Bad: bad, P0: p0}
		p.UpdateJudged(&s, j)
		pr.UpdateJudged(&s.Promote, j)
		if p.Evaluate(s).Reject {
			halted = true
		}
		if pr.Passed(s.Promote) {
			promoted = true
		}
	}
	return halted, promoted
}

// TestJudgedFalseHaltRate: hosts judged unhealthy no more often than the
// bound (a new version no worse than the controls) halt at most alpha of
// rollouts, however many batches are looked at; and the promotion test,
// run alongside, passes such healthy content in nearly every rollout.
func TestJudgedFalseHaltRate(t *testing.T) {
	const rollouts = 2000
	for _, tt := range []struct {
		name    string
		p0, p   float64
		seed    uint64
		promote bool
	}{
		{"at the bound", 0.01, 0.01, 1, true},
		{"below the bound", 0.01, 0.005, 2, true},
		{"a rare finding", 0.001, 0.001, 3, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := gate.Params{Alpha: 0.01, Ratios: gate.Default().Ratios}
			rng := rand.New(rand.NewPCG(tt.seed, 0x4ea1))
			halts, promoted := 0, 0
			for range rollouts {
				h, pr := judgedRollout(rng, p, gate.DefaultPromotion(), tt.p0, tt.p)
				if h {
					halts++
				}
				if pr {
					promoted++
				}
			}
			upper := upperBound(halts, rollouts, 0.05)
			t.Logf("p0 %g, p %g: %d of %d halted (95%% upper bound %.4f); promoted in %d", tt.p0, tt.p, halts, rollouts, upper, promoted)
			require.LessOrEqual(t, upper, p.Alpha, "false-halt rate not shown below alpha")
			if tt.promote {
				require.Greater(t, promoted, rollouts*9/10, "healthy content is promoted on the evidence")
			}
		})
	}
}

// TestJudgedDetection: content that makes hosts unhealthy ten times as
// often as the controls halts nearly always and is never promoted; content
// that makes every host unhealthy (a sensor that sees nothing) halts.
func TestJudgedDetection(t *testing.T) {
	p := gate.Default()
	rng := rand.New(rand.NewPCG(7, 0x4ea1))
	halts, promoted := 0, 0
	for range 500 {
		h, pr := judgedRollout(rng, p, gate.DefaultPromotion(), 0.01, 0.1)
		if h {
			halts++
		}
		if pr {
			promoted++
		}
	}
	require.GreaterOrEqual(t, halts, 495, "10x: halted in %d of 500", halts)
	require.Zero(t, promoted, "10x is never shown to be no more than 2x worse")

	var s gate.State
	p.UpdateJudged(&s, gate.Judged{N: 2, Bad: 2, P0: 0.01})
	require.True(t, p.Evaluate(s).Reject, "two hosts of two unhealthy at p0 1%%: statistic %v", p.Evaluate(s).Statistic)
}

// TestPromotionBound: content exactly Margin times worse (the worst case
// of the promotion test's null) is promoted in at most Beta of rollouts,
// however often the test is looked at; content no worse is promoted.
func TestPromotionBound(t *testing.T) {
	const rollouts = 2000
	pr := gate.Promotion{Margin: 2, Beta: 0.05}
	rng := rand.New(rand.NewPCG(11, 0xbe7a))
	run := func(rho float64) int {
		promoted := 0
		for range rollouts {
			var l float64
			for step := range 200 {
				// The treated share grows through the stages.
				q := []float64{0.001, 0.01, 0.1, 0.5}[min(step/50, 3)]
				theta := rho * q / (rho*q + 1 - q)
				k := rng.IntN(4)
				var x int64
				for range k {
					if rng.Float64() < theta {
						x++
					}
				}
				pr.Update(&l, gate.Batch{TreatedFailures: x, ControlFailures: int64(k) - x, TreatedAtRisk: int64(q * 1e6), ControlAtRisk: int64((1 - q) * 1e6)})
				if pr.Passed(l) {
					promoted++
					break
				}
			}
		}
		return promoted
	}
	worse := run(2)
	upper := upperBound(worse, rollouts, 0.05)
	same := run(1)
	t.Logf("promoted: %d of %d at the margin (95%% upper bound %.4f), %d no worse", worse, rollouts, upper, same)
	require.LessOrEqual(t, upper, pr.Beta, "content at the margin promoted too often")
	require.Greater(t, same, rollouts*9/10, "content no worse is promoted")
	require.Zero(t, run(10), "10x worse is never promoted")

	off := gate.Promotion{Off: true}
	require.NoError(t, off.Check())
	require.False(t, off.Passed(math.Inf(1)))
	require.Error(t, gate.Promotion{Margin: 1, Beta: 0.05}.Check())
	require.Error(t, gate.Promotion{Margin: 2, Beta: 0}.Check())
}

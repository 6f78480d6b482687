package fleetsim_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/fleetsim"
)

func params(scenario fleetsim.Scenario, policy fleetsim.Policy, seed uint64) fleetsim.Params {
	p := fleetsim.Defaults()
	p.Hosts = 200_000
	p.Scenario, p.Policy, p.Seed = scenario, policy, seed
	return p
}

func run(t *testing.T, p fleetsim.Params) *fleetsim.Result {
	t.Helper()
	r, err := fleetsim.Run(p)
	require.NoError(t, err)
	return r
}

// TestThe2024Case: content that crashes every host on load. All at once,
// every host loads it; with no host guard every host is still down at the
// end (the hands-on repair of 2024). Under ringfence only canaries load it,
// the halt comes with the first report, and the guard brings every host
// back.
func TestThe2024Case(t *testing.T) {
	p := params(fleetsim.CrashAll, fleetsim.AllAtOnce, 1)
	p.Guard = false
	r := run(t, p)
	require.Equal(t, p.Hosts, r.Loaded)
	require.Greater(t, r.Down, p.Hosts*98/100, "without the guard, every host that was online crash-loops")
	require.False(t, r.Halted)

	p = params(fleetsim.CrashAll, fleetsim.Ringfence, 1)
	r = run(t, p)
	require.True(t, r.Halted)
	require.LessOrEqual(t, r.Loaded, p.Canaries, "only the canary group ever loads it")
	require.Positive(t, r.Loaded)
	require.LessOrEqual(t, r.HaltAfterReport, 10*time.Minute)
	require.Zero(t, r.Down, "the guard brought every canary back")
	require.Equal(t, controller.KindRollback, r.Decisions[len(r.Decisions)-1].Kind)
}

func TestOnePercentCrashOnLoad(t *testing.T) {
	for seed := range uint64(5) {
		p := params(fleetsim.CrashOnePct, fleetsim.Ringfence, seed)
		r := run(t, p)
		require.True(t, r.Halted, "seed %d", seed)
		require.LessOrEqual(t, r.Loaded, p.Hosts/100+p.Canaries, "seed %d: halted by the canary group or the 1%% stage", seed)
		require.LessOrEqual(t, r.HaltAfterReport, 10*time.Minute, "seed %d", seed)
	}
}

func TestBackgroundRegressionIsCaught(t *testing.T) {
	p := params(fleetsim.Background10x, fleetsim.Ringfence, 3)
	p.Hosts = 1_000_000
	r := run(t, p)
	require.True(t, r.Halted, "hosts on the new version crash 10x as often: the gate must see it")
	require.Less(t, r.Loaded, p.Hosts/10, "before the 10%% stage is through")
	// With time-based waves nothing stops it.
	p.Policy = fleetsim.Waves
	r = run(t, p)
	require.False(t, r.Halted)
	require.Greater(t, r.Loaded, p.Hosts/3)
}

func TestHealthyUpdate(t *testing.T) {
	for _, emergency := range []bool{false, true} {
		p := params(fleetsim.Healthy, fleetsim.Ringfence, 7)
		p.Emergency = emergency
		r := run(t, p)
		require.False(t, r.Halted, "emergency=%v: a healthy update must not halt: %+v", emergency, r.Decisions)
		require.Positive(t, r.Reach99)
		limit := 24 * time.Hour
		if emergency {
			limit = 3 * time.Hour
		}
		require.Less(t, r.Reach99, limit, "emergency=%v", emergency)
		require.Zero(t, r.Crashed)
	}
}

func TestDeterministic(t *testing.T) {
	p := params(fleetsim.Background10x, fleetsim.Ringfence, 42)
	a, b := run(t, p), run(t, p)
	require.Equal(t, a.Loaded, b.Loaded)
	require.Equal(t, a.HaltAfter, b.HaltAfter)
	require.Equal(t, a.Series, b.Series)
	p.Seed = 43
	c := run(t, p)
	require.NotEqual(t, a.Series, c.Series, "another seed, another fleet")
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*fleetsim.Params)
		want string
	}{
		{"no hosts", func(p *fleetsim.Params) { p.Hosts = 0 }, "hosts"},
		{"scenario", func(p *fleetsim.Params) { p.Scenario = "meteor" }, `scenario "meteor"`},
		{"policy", func(p *fleetsim.Params) { p.Policy = "yolo" }, `policy "yolo"`},
		{"offline", func(p *fleetsim.Params) { p.Offline = 1 }, "offline"},
		{"step", func(p *fleetsim.Params) { p.Step = time.Second }, "step"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := fleetsim.Defaults()
			tc.edit(&p)
			_, err := fleetsim.Run(p)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestParse(t *testing.T) {
	for _, sc := range fleetsim.Scenarios {
		got, err := fleetsim.ParseScenario(sc.String())
		require.NoError(t, err)
		require.Equal(t, sc, got)
	}
	for _, pol := range fleetsim.Policies {
		got, err := fleetsim.ParsePolicy(pol.String())
		require.NoError(t, err)
		require.Equal(t, pol, got)
	}
	_, err := fleetsim.ParseScenario("meteor")
	require.EqualError(t, err, `fleetsim: scenario "meteor"; want one of crash-all, crash-1pct, background-10x, background-3x, cpu-2x, silent-sensor, memory-leak, healthy`)
	_, err = fleetsim.ParsePolicy("Ringfence")
	require.EqualError(t, err, `fleetsim: policy "Ringfence"; want one of all-at-once, waves, ringfence`)
}

// BenchmarkTenMillionHosts: one healthy ringfence rollout over 10M hosts
// and 3 simulated days (the heaviest run: every host takes the version).
func BenchmarkTenMillionHosts(b *testing.B) {
	p := fleetsim.Defaults()
	p.Scenario, p.Policy = fleetsim.Healthy, fleetsim.Ringfence
	for i := range b.N {
		p.Seed = uint64(i)
		r, err := fleetsim.Run(p)
		if err != nil {
			b.Fatal(err)
		}
		if r.Loaded != p.Hosts {
			b.Fatalf("loaded %d of %d", r.Loaded, p.Hosts)
		}
	}
}

package fleetsim_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/fleetsim"
)

// TestChannels: K healthy rollouts at once on the same hosts, with
// overlapping trials and with one trial at a time per host. What must
// hold whatever the numbers: every channel's version reaches 99% of the
// fleet, none halts; one channel is the single-channel model
// (Run) and the same in both modes; waiting never makes a rollout faster,
// and with two channels or more it makes it slower; only one trial at a
// time makes versions wait, and the first channel (the daemon's first at a
// check-in) never does.
func TestChannels(t *testing.T) {
	p := fleetsim.Defaults()
	p.Hosts, p.Duration, p.Seed = 50_000, 36*time.Hour, 11
	single := run(t, func() fleetsim.Params {
		q := p
		q.Scenario, q.Policy, q.FixedBakes = fleetsim.Healthy, fleetsim.Ringfence, true
		return q
	}())
	for _, k := range []int{1, 2, 3} {
		var res [2]*fleetsim.ChannelsResult
		for i, one := range []bool{false, true} {
			r, err := fleetsim.Channels(p, k, one)
			require.NoError(t, err)
			res[i] = r
			require.Equal(t, k, r.Channels)
			require.Len(t, r.Runs, k)
			require.Zero(t, r.Halted, "k=%d one=%v: healthy updates", k, one)
			require.Positive(t, r.Reach99, "k=%d one=%v", k, one)
			for c, x := range r.Runs {
				require.Positive(t, x.Reach99, "k=%d one=%v channel %d reaches 99%%", k, one, c)
				require.LessOrEqual(t, x.Reach99, r.Reach99)
				require.Zero(t, x.Crashed)
			}
			require.GreaterOrEqual(t, r.Reach99, r.Mean99)
			if !one || k == 1 {
				require.Zero(t, r.Waited, "k=%d one=%v: nothing waits", k, one)
			} else {
				require.Positive(t, r.Waited, "k=%d: versions that arrive during another channel's trial wait", k)
				// The first channel goes first at a check-in; it waits only
				// where another channel's canary wave opened first.
				require.Less(t, r.Runs[0].Waited, r.Waited, "k=%d: the first channel waits least", k)
			}
		}
		overlap, oneTrial := res[0], res[1]
		if k == 1 {
			require.Equal(t, overlap.Reach99, oneTrial.Reach99)
			require.Equal(t, overlap.Runs[0].Series, oneTrial.Runs[0].Series, "one channel: nothing to wait for")
			require.Equal(t, single.Reach99, overlap.Reach99, "one channel is the single-channel model")
			require.Equal(t, single.Series, overlap.Runs[0].Series)
			continue
		}
		require.Greater(t, oneTrial.Reach99, overlap.Reach99, "k=%d: one trial at a time is slower", k)
		require.GreaterOrEqual(t, oneTrial.Mean99, overlap.Mean99, "k=%d", k)
	}

	_, err := fleetsim.Channels(p, 0, true)
	require.ErrorContains(t, err, "0 channels")
	_, err = fleetsim.Channels(p, fleetsim.MaxChannels+1, true)
	require.ErrorContains(t, err, "channels")
}

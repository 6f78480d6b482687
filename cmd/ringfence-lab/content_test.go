package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/validator"
)

// agentEventRate is the reference agent's default event rate per channel
// (ringfenced agent --events-per-second): what an event's cost is
// multiplied by in an agent's CPU.
const agentEventRate = 200

// labChannelFile returns the shared testdata's channel file NAME, raw and
// parsed.
func labChannelFile(t testing.TB, name string) ([]byte, *validator.ChannelFile) {
	t.Helper()
	data := testfiles.Channel(t, name)
	f, err := validator.Parse(data)
	require.NoError(t, err)
	return data, f
}

// TestCostlyContentPassesEveryCheck: scenario 6's content passes what
// every host checks before it activates content, on both interpreters
// the lab runs: validation against either manifest, the reference
// preflight against the 7.12 manifest (the publisher's and most hosts'),
// and the 7.11 agent's own preflight (h02's), which evaluates it without
// crashing, only slowly (BenchmarkCostlyContent says how slowly). Its
// version is newer than every other the lab publishes on channel 291.
func TestCostlyContentPassesEveryCheck(t *testing.T) {
	cfg := DefaultConfig()
	data, f := labChannelFile(t, cfg.Content.Costly)
	require.Equal(t, uint32(291), f.Channel)
	require.Equal(t, uint32(1007), f.ContentVersion, "after scenario 5's 1006")
	for _, v := range []string{"7.11", "7.12"} {
		caps := testfiles.Capabilities(t, v)
		_, problems := validator.Validate(data, caps, validator.Options{})
		require.Empty(t, problems, "sensor %s", v)
		rep, err := sensor.RunPreflight(data, caps, sensor.DefaultPreflightSeed, sensor.DefaultRandomEvents)
		require.NoError(t, err, "sensor %s", v)
		require.Equal(t, len(f.Instances), rep.Instances)
		require.Equal(t, sensor.DefaultRandomEvents, rep.Random)
	}
	// Its rules are good-ipc-1002's, plus log-only ones: no new alert.
	_, good := labChannelFile(t, "good-ipc-1002")
	require.Equal(t, good.Instances, f.Instances[:len(good.Instances)])
	for _, in := range f.Instances[len(good.Instances):] {
		require.Equal(t, validator.ActionLog, in.Action, "instance %d", in.ID)
	}
}

// BenchmarkCostlyContent times scenario 6's content against the good
// content it replaces on the agent's own event stream (sensor.RandomEvents,
// what the reference agent evaluates), on a 7.11 interpreter (the
// backtracking glob) and a 7.12 one in the same run. It reports each
// one's time per event, what that adds to an agent's CPU at its default
// rate (cores, one channel), and the 7.11 agent's preflight run (the
// harness h02's preflight runs: synthesized events, then 5,000 random
// ones), which must end well within the hosts' 30 s preflight timeout.
func BenchmarkCostlyContent(b *testing.B) {
	caps := map[string]*validator.Capabilities{"7.11": testfiles.Capabilities(b, "7.11"), "7.12": testfiles.Capabilities(b, "7.12")}
	for _, name := range []string{"good-ipc-1002", DefaultConfig().Content.Costly} {
		data, f := labChannelFile(b, name)
		next := sensor.RandomEvents(f, 1)
		events := make([]sensor.Event, 2000)
		for i := range events {
			events[i] = next()
		}
		b.Run(name, func(b *testing.B) {
			var per [2]time.Duration
			for range b.N {
				for i, v := range []string{"7.11", "7.12"} {
					p, err := sensor.New(caps[v]).Prepare(f)
					require.NoError(b, err)
					start := time.Now()
					for _, ev := range events {
						p.Eval(ev)
					}
					per[i] += time.Since(start)
				}
			}
			n := float64(b.N * len(events))
			for i, v := range []string{"7.11", "7.12"} {
				ns := float64(per[i].Nanoseconds()) / n
				b.ReportMetric(ns, v+"-ns/event")
				b.ReportMetric(ns*agentEventRate/1e9, v+"-cores")
			}
			b.ReportMetric(float64(per[0])/float64(per[1]), "legacy-x")
		})
		b.Run(fmt.Sprintf("%s/preflight-7.11", name), func(b *testing.B) {
			var took time.Duration
			for range b.N {
				start := time.Now()
				_, err := sensor.RunPreflight(data, caps["7.11"], sensor.DefaultPreflightSeed, sensor.DefaultRandomEvents)
				took += time.Since(start)
				require.NoError(b, err)
			}
			b.ReportMetric(took.Seconds()/float64(b.N), "s/preflight")
		})
	}
}

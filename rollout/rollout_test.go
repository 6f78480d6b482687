package rollout_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/rollout"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, in, err string
	}{
		{"ok", `{"format":"ringfence-rollout/v1","channel":291,"stages":[{"name":"canary","percent":0,"hosts":["h1"],"version":1002}]}`, ""},
		{"format", `{"format":"v0","channel":291,"stages":[{"name":"a","percent":1,"version":1}]}`, "format"},
		{"no content", `{"format":"ringfence-rollout/v1","channel":291,"stages":[],"deny":[1001]}`, ""},
		{"no list of stages", `{"format":"ringfence-rollout/v1","channel":291}`, "no list of stages"},
		{"percent", `{"format":"ringfence-rollout/v1","channel":291,"stages":[{"name":"a","percent":101,"version":1}]}`, "percent"},
		{"version", `{"format":"ringfence-rollout/v1","channel":291,"stages":[{"name":"a","percent":1}]}`, "version"},
		{"unknown", `{"format":"ringfence-rollout/v1","channel":291,"stages":[{"name":"a","percent":1,"version":1}],"x":1}`, "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rollout.Parse([]byte(tc.in))
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.err)
		})
	}
	_, err := rollout.Parse(make([]byte, rollout.MaxSize+1))
	require.ErrorContains(t, err, "limit")
}

// TestBucketsSpreadAndNest: buckets are stable, spread evenly, and a stage
// of a larger percentage contains every host of a smaller one.
func TestBucketsSpreadAndNest(t *testing.T) {
	const n = 100_000
	counts := make([]int, 10)
	small := rollout.Stage{Percent: 1, Version: 1}
	large := rollout.Stage{Percent: 10, Version: 1}
	inSmall, inLarge := 0, 0
	for i := range n {
		id := fmt.Sprintf("host-%d", i)
		b := rollout.Bucket(id)
		require.Equal(t, b, rollout.Bucket(id))
		require.True(t, b >= 0 && b < rollout.Buckets)
		counts[b*10/rollout.Buckets]++
		h := rollout.Host{ID: id}
		if small.Contains(h) {
			inSmall++
			require.True(t, large.Contains(h), "stages must nest")
		}
		if large.Contains(h) {
			inLarge++
		}
	}
	for _, c := range counts {
		require.InDelta(t, n/10, c, n/100, "buckets spread evenly: %v", counts)
	}
	require.InDelta(t, n/100, inSmall, n/500)
	require.InDelta(t, n/10, inLarge, n/100)
}

func TestStageFor(t *testing.T) {
	p := &rollout.Plan{Format: rollout.Format, Channel: 1, Stages: []rollout.Stage{
		{Name: "canary", Hosts: []string{"c1"}, Tags: []string{"early"}, Version: 3},
		{Name: "half", Percent: 50, Version: 2},
		{Name: "all", Percent: 100, Version: 1},
	}, Deny: []uint32{4}}
	require.Equal(t, 0, p.StageFor(rollout.Host{ID: "c1"}))
	require.Equal(t, 0, p.StageFor(rollout.Host{ID: "x", Tags: []string{"early"}}))
	seen := map[int]bool{}
	for i := range 200 {
		seen[p.StageFor(rollout.Host{ID: fmt.Sprint(i)})] = true
	}
	require.Equal(t, map[int]bool{1: true, 2: true}, seen)
	require.True(t, p.Denied(4))
	require.False(t, p.Denied(3))
	require.Equal(t, -1, (&rollout.Plan{Stages: []rollout.Stage{{Percent: 0, Version: 1}}}).StageFor(rollout.Host{ID: "x"}))
}

// A stage that names sensors holds only hosts of those sensors: the rest,
// canaries by name included, fall through to the next stage (the version
// the fleet ran before).
func TestStageForSensors(t *testing.T) {
	p := &rollout.Plan{Format: rollout.Format, Channel: 291, Stages: []rollout.Stage{
		{Name: "canary", Hosts: []string{"c1", "c2"}, Version: 1004, Sensors: []string{"7.12"}},
		{Name: "fleet", Percent: 100, Version: 1004, Sensors: []string{"7.12"}},
		{Name: "rest", Percent: 100, Version: 1002},
	}}
	require.Equal(t, 0, p.StageFor(rollout.Host{ID: "c1", Sensor: "7.12"}))
	require.Equal(t, 2, p.StageFor(rollout.Host{ID: "c2", Sensor: "7.11"}), "a named canary of another sensor is not in the stage")
	require.Equal(t, 2, p.StageFor(rollout.Host{ID: "c2"}), "an unknown sensor is in no constrained stage")
	require.Equal(t, 1, p.StageFor(rollout.Host{ID: "x", Sensor: "7.12"}))

	data := []byte(`{"format": "ringfence-rollout/v1", "channel": 291, "stages": [{"name": "all", "percent": 100, "version": 1004, "sensors": ["7.12 beta"]}]}`)
	_, err := rollout.Parse(data)
	require.ErrorContains(t, err, "only letters", "a plan's sensors are checked as a constraint is")
}

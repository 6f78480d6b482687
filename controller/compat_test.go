package controller_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/compat"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/wire"
)

// TestConstrainedRollout: a version published for sensor 7.12 only is
// never given to a 7.11 host, named canary or not: the signed plan's stages
// carry the constraint, the host falls through to the old version, and it
// counts on neither side of the gate (its crashes are not controls, its
// refusal is not a failure of the content).
func TestConstrainedRollout(t *testing.T) {
	c := controller.New(nil, nil)
	now := t0
	seq := uint64(0)
	sensorOf := map[string]string{"a": "7.12", "b": "7.11", "c": "7.12", "d": "7.11", "e": ""}
	report := func(id string, running uint32, evs ...controller.Event) controller.Ingested {
		t.Helper()
		evs = append([]controller.Event{{Kind: wire.EventHeartbeat, Channel: 291, Version: running}}, evs...)
		for i := range evs {
			seq++
			evs[i].Seq = seq
		}
		res, err := c.Ingest(controller.Report{HostID: id, Versions: map[uint32]uint32{291: running}, Sensor: sensorOf[id], Events: evs}, now)
		require.NoError(t, err)
		return res
	}
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		_, err := c.Admit(id, controller.Admission{By: "test"}, now)
		require.NoError(t, err)
		report(id, 1002)
	}
	require.Equal(t, map[string]int{"7.12": 2, "7.11": 2, "": 1}, c.Sensors())
	require.Equal(t, map[string]int{"7.12": 2, "7.11": 2, "": 1}, c.SensorsOn(291))
	require.Empty(t, c.SensorsOn(292))

	only712 := compat.Constraint{Sensors: []string{"7.12"}, Excluded: map[string]string{"7.11": "FIELD_NOT_SUPPLIED"}}
	_, err := c.Start(controller.Spec{Channel: 291, To: 1004, Compat: only712, Silence: time.Hour, Stages: []controller.StageSpec{
		{Name: "canary", Hosts: []string{"a", "b"}, MinHosts: 1},
		{Name: "all", Percent: 100, MinHosts: 1},
	}}, "alice", "", now)
	require.NoError(t, err)
	c.TakeChanges()

	plan := c.Plan(291)
	require.Equal(t, []string{"7.12"}, plan.Stages[0].Sensors, "the canary stage carries the constraint")
	require.Equal(t, uint32(1002), plan.Stages[len(plan.Stages)-1].Version)
	require.Empty(t, plan.Stages[len(plan.Stages)-1].Sensors, "the old version is for every sensor")
	require.Equal(t, 0, plan.StageFor(rollout.Host{ID: "a", Sensor: "7.12"}))
	require.Equal(t, len(plan.Stages)-1, plan.StageFor(rollout.Host{ID: "b", Sensor: "7.11"}), "the 7.11 canary keeps 1002")
	require.Equal(t, []int{1, 1}, c.StageSizes(291), "a in the canary stage, c in the next; b is named, but in neither")

	// b: a sensor crash on the old version is no control failure, and its
	// refusal of 1004 is no failure of 1004 (nor a canary halt).
	res := report("b", 1002, controller.Event{Kind: wire.EventSensorCrashed, Channel: 291, Version: 1002},
		controller.Event{Kind: wire.EventIncompatible, Channel: 291, Version: 1004, Reason: "published for sensor 7.12"})
	require.Empty(t, res.Decisions)
	// a takes 1004 and is healthy; c, on 1002, is a control.
	report("a", 1004, controller.Event{Kind: wire.EventInstalled, Channel: 291, Version: 1004},
		controller.Event{Kind: wire.EventHealthy, Channel: 291, Version: 1004})
	report("c", 1002)

	now = now.Add(time.Minute)
	c.Evaluate(now)
	r, _ := c.Rollout(291)
	require.Equal(t, controller.StateRunning, r.State)
	require.Equal(t, int64(1), r.Counts.Treated)
	require.Equal(t, int64(0), r.Counts.TreatedFailures)
	require.Equal(t, int64(0), r.Counts.ControlFailures, "the excluded host's crash is not a control's")
	require.Equal(t, int64(3), r.Counts.Excluded, "b, d (7.11) and e (no sensor said)")
	require.Equal(t, int64(1), r.Counts.Control, "c only")

	// Completed, the plan still keeps other sensors on 1002.
	_, err = c.Action(291, controller.KindPromote, "alice", "healthy on 7.12", now)
	require.NoError(t, err)
	r, _ = c.Rollout(291)
	require.Equal(t, controller.StateCompleted, r.State)
	plan = c.Plan(291)
	require.Len(t, plan.Stages, 2)
	require.Equal(t, rollout.Stage{Name: "fleet", Percent: 100, Version: 1004, Sensors: []string{"7.12"}}, plan.Stages[0])
	require.Equal(t, uint32(1002), plan.Stages[1].Version)
	require.Equal(t, 1, plan.StageFor(rollout.Host{ID: "d", Sensor: "7.11"}))
	require.Equal(t, 0, plan.StageFor(rollout.Host{ID: "c", Sensor: "7.12"}))
}

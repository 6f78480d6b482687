package controller_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/wire"
)

// TestOnlyAdmittedHostsReport: a report from a host the fleet did not
// admit is refused and changes nothing.
func TestOnlyAdmittedHostsReport(t *testing.T) {
	f := newFleet(t, 10, 2, 1001)
	before := snapshot(t, f.c)
	_, err := f.c.Ingest(controller.Report{HostID: "h-stranger", Versions: map[uint32]uint32{291: 7},
		Events: []controller.Event{{Seq: 1, Kind: wire.EventReverted, Channel: 291, Version: 7}}}, f.now)
	require.ErrorIs(t, err, controller.ErrNotAdmitted)
	require.Equal(t, before, snapshot(t, f.c))
	require.True(t, f.c.Changes().Empty())
}

// TestReplayHasNoEffect: a batch whose events are all at or below the
// host's last applied seq moves nothing: not its version, not its
// last-seen time, not a count.
func TestReplayHasNoEffect(t *testing.T) {
	f := newFleet(t, 10, 2, 1001)
	r := f.start(t, 1002)
	id := f.canon[0]
	old := controller.Report{HostID: id, Versions: map[uint32]uint32{291: 1001},
		Events: []controller.Event{{Seq: 1, Kind: wire.EventHeartbeat, Channel: 291, Version: 1001}}}
	f.now = f.now.Add(time.Minute)
	f.report(id, 1002, ev(wire.EventInstalled, 1002, ""))
	f.c.TakeChanges()
	h, _ := f.c.Host(id)
	seen := h.LastSeen

	f.now = f.now.Add(time.Minute)
	res, err := f.c.Ingest(old, f.now)
	require.NoError(t, err)
	require.Equal(t, 0, res.Applied)
	require.Equal(t, 1, res.Stale)
	h, _ = f.c.Host(id) // a copy: look again
	require.Equal(t, uint32(1002), h.Versions[291], "a replayed batch does not move the host back a version")
	require.Equal(t, seen, h.LastSeen, "nor refresh its last-seen time")
	require.True(t, f.c.Changes().Empty())

	// A resend of a batch mixing old and new events applies only the new.
	f.seq++
	res, err = f.c.Ingest(controller.Report{HostID: id, Versions: map[uint32]uint32{291: 1002}, Events: []controller.Event{
		{Seq: 2, Kind: wire.EventReverted, Channel: 291, Version: 1002},
		{Seq: f.seq, Kind: wire.EventHealthy, Channel: 291, Version: 1002},
	}}, f.now)
	require.NoError(t, err)
	require.Equal(t, 1, res.Applied)
	require.Equal(t, controller.StateRunning, r.State, "the stale revert was not applied")
}

// TestOffPlanReportsCountNowhere: hosts claiming the new version that the
// signed plan did not give their stage neither advance the stage nor halt
// the rollout, and are counted apart.
func TestOffPlanReportsCountNowhere(t *testing.T) {
	f := newFleet(t, 200, 5, 1001)
	r := f.start(t, 1002)
	p := f.c.Plan(291)
	var outside []string
	for _, id := range f.ids {
		if !planSends(p, id, 1002) {
			outside = append(outside, id)
		}
	}
	require.Greater(t, len(outside), 150)
	f.now = f.now.Add(20 * time.Minute) // past the canary stage's bake
	for _, id := range outside[:10] {
		f.report(id, 1002, ev(wire.EventInstalled, 1002, ""), ev(wire.EventHealthy, 1002, ""))
	}
	for _, id := range outside[10:12] {
		f.report(id, 1001, ev(wire.EventReverted, 1002, "load-crash"))
	}
	for _, id := range f.canon {
		f.report(id, 1001) // the real canaries have not installed yet
	}
	ds := f.c.Evaluate(f.now)
	require.Equal(t, controller.StateRunning, r.State, "decisions: %v", kinds(ds))
	require.Equal(t, 0, r.Stage, "made-up healthy reports do not advance the canary stage")
	require.Equal(t, int64(0), r.Counts.Healthy)
	require.Equal(t, int64(0), r.Counts.TreatedFailures, "off-plan reverts are not treated failures")
	require.Equal(t, int64(10), r.Counts.OffPlan)
	require.Equal(t, int64(0), r.Counts.Treated)
}

// TestMembershipIsTheServers: the canary group is the hosts the server
// tagged; the signed plan names them by id (never a tag a host could
// claim); retagging re-signs the plan.
func TestMembershipIsTheServers(t *testing.T) {
	f := newFleet(t, 30, 0, 1001)
	for _, id := range f.ids[:3] {
		require.NoError(t, f.c.SetTags(id, []string{"canary"}))
	}
	f.c.TakeChanges()
	_, err := f.c.Start(controller.Spec{Channel: 291, To: 1002, Stages: []controller.StageSpec{
		{Name: "canary", Tags: []string{"canary"}, Bake: time.Minute, MinHosts: 3},
		{Name: "all", Percent: 100}}}, "alice", "", f.now)
	require.NoError(t, err)
	p := f.c.Plan(291)
	require.Equal(t, f.ids[:3], p.Stages[0].Hosts)
	require.Empty(t, p.Stages[0].Tags, "the plan names hosts, not tags")
	require.Equal(t, 0, p.StageFor(rollout.Host{ID: f.ids[0]}))
	require.NotEqual(t, 0, p.StageFor(rollout.Host{ID: f.ids[10], Tags: []string{"canary"}}), "a host's own claim of the tag puts it in no stage")
	f.c.TakeChanges()

	require.NoError(t, f.c.SetTags(f.ids[10], []string{"canary"}))
	require.Equal(t, []uint32{291}, f.c.Changes().Plans, "membership changed: the plan is signed again")
	require.Contains(t, f.c.Plan(291).Stages[0].Hosts, f.ids[10])

	// A revert from a tagged canary halts at once; one from the host before
	// it was tagged would not have.
	f.c.TakeChanges()
	ds := f.report(f.ids[10], 1001, ev(wire.EventReverted, 1002, "load-crash"))
	require.Equal(t, []string{"halt", "rollback"}, kinds(ds))
}

// TestUndoRestoresEverything: a change that cannot be committed is put
// back exactly: hosts (new ones gone), tracks, rollouts, decisions.
func TestUndoRestoresEverything(t *testing.T) {
	f := newFleet(t, 50, 5, 1001)
	r := f.start(t, 1002)
	f.step(t, r, 4*time.Minute, func(string) bool { return true })
	f.c.TakeChanges()
	before := snapshot(t, f.c)

	// One change touching everything: a new host, a canary revert (halt,
	// rollback), a silent host marked failed, a retag, a removal.
	f.now = f.now.Add(time.Hour)
	_, err := f.c.Admit("h-new", controller.Admission{Tags: []string{"canary"}}, f.now)
	require.NoError(t, err)
	f.report(f.canon[0], 1001, ev(wire.EventReverted, 1002, "load-crash"))
	f.c.Evaluate(f.now)
	require.NoError(t, f.c.SetTags(f.ids[20], []string{"x"}))
	require.NoError(t, f.c.Remove(f.ids[21]))
	require.Equal(t, controller.StateRolledBack, r.State)
	require.NotEqual(t, before, snapshot(t, f.c))

	f.c.Undo()
	require.Equal(t, before, snapshot(t, f.c))
	require.True(t, f.c.Changes().Empty())
	require.False(t, f.c.Known("h-new"))
	require.True(t, f.c.Known(f.ids[21]))
	r2, _ := f.c.Rollout(291)
	require.Equal(t, controller.StateRunning, r2.State)

	// And the same change, settled, sticks.
	f.report(f.canon[0], 1001, ev(wire.EventReverted, 1002, "load-crash"))
	f.c.Settle()
	r2, _ = f.c.Rollout(291)
	require.Equal(t, controller.StateRolledBack, r2.State)
}

// TestFirstRolloutRollsBackToNoContent: a rollout from no content, rolled
// back, signs a plan that gives nobody content, and the plan parses.
func TestFirstRolloutRollsBackToNoContent(t *testing.T) {
	f := newFleet(t, 20, 3, 0)
	r := f.start(t, 1)
	require.Equal(t, uint32(0), r.From)
	ds := f.report(f.canon[0], 0, ev(wire.EventReverted, 1, "load-crash"))
	require.Equal(t, []string{"halt", "rollback"}, kinds(ds))
	p := f.c.Plan(291)
	require.True(t, p.NoContent())
	require.Equal(t, []uint32{1}, p.Deny)
	b, err := json.Marshal(p)
	require.NoError(t, err)
	back, err := rollout.Parse(b)
	require.NoError(t, err, "%s", b)
	require.True(t, back.NoContent())
}

// TestAllowTakesAVersionOffTheDenyList: only an operator, with a reason,
// recorded; the next start of the version is accepted.
func TestAllowTakesAVersionOffTheDenyList(t *testing.T) {
	f := newFleet(t, 20, 3, 1001)
	f.start(t, 1002)
	f.report(f.canon[0], 1001, ev(wire.EventReverted, 1002, "load-crash"))
	_, err := f.c.Start(controller.Spec{Channel: 291, To: 1002}, "alice", "", f.now)
	require.ErrorContains(t, err, "denied")

	_, err = f.c.Allow(291, 1002, "carol", "", f.now)
	require.ErrorContains(t, err, "say why")
	_, err = f.c.Allow(291, 999, "carol", "typo", f.now)
	require.ErrorIs(t, err, controller.ErrState)
	d, err := f.c.Allow(291, 1002, "carol", "the crash was a lab host's disk", f.now)
	require.NoError(t, err)
	require.Equal(t, controller.KindAllow, d.Kind)
	require.Equal(t, "carol", d.Actor)
	require.Contains(t, d.Reason, "the crash was a lab host's disk")
	require.Empty(t, f.c.Plan(291).Deny)
	require.Equal(t, []uint32{291}, f.c.Changes().Plans)
	_, err = f.c.Start(controller.Spec{Channel: 291, To: 1002, Stages: f.stages()}, "alice", "", f.now)
	require.NoError(t, err)
}

// snapshot is the controller's whole state as JSON (hosts by id, rollouts).
func snapshot(t *testing.T, c *controller.Controller) string {
	t.Helper()
	hosts := map[string]*controller.Host{}
	for _, h := range c.HostList() {
		hosts[h.ID] = h
	}
	require.Equal(t, len(hosts), c.Hosts(), "the walk list and the map agree")
	b, err := json.Marshal(struct {
		Hosts    map[string]*controller.Host
		Rollouts []*controller.Rollout
	}{hosts, c.Rollouts()})
	require.NoError(t, err)
	return string(b)
}

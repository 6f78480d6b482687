package daemon_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/validator"
	"github.com/ringfence/ringfence/wire"
)

// TestPreflightByTheInstalledAgent: the 2024 host of TestEndToEnd (its
// capability manifest says sensor 7.12, its agent is really 7.11), with
// agent.preflight_command pointed at the installed agent itself
// (`ringfenced agent --capabilities <the agent's> --preflight`) instead of
// the reference harness run against the manifest. Version 1001 installs
// and goes good; cf291-shape, which the lying manifest's validation
// accepts, crashes the agent's own interpreter in preflight: the poll
// rejects it, nothing is staged or activated, the agent keeps running
// 1001 without a restart, and the host reports rejected-preflight upstream,
// never installed.
func TestPreflightByTheInstalledAgent(t *testing.T) {
	bin := buildRingfenced(t)
	clk := clock.NewFake(time.Now())
	l := newLab(t, clk)
	good := l.roll(t, "good-ipc-1001")

	var mu sync.Mutex
	var statuses []daemon.Status
	ctx, cancel := context.WithCancel(context.Background())
	h := startHost(t, ctx, l, clk, bin, 0, func(o *daemon.Options) {
		// The manifest (o.Capabilities) still lies: 7.12. The agent's
		// command line names what it really is, and preflight runs it.
		agent := o.AgentCommand[:4:4]
		require.Equal(t, []string{bin, "agent", "--capabilities", filepath.Join(testfiles.Dir(), "capabilities", "sensor-7.11.json")}, agent)
		require.Equal(t, "7.12", o.Capabilities.Sensor)
		o.PreflightCommand = append(agent, "--preflight")
		observe := o.Observe
		o.Observe = func(s daemon.Status) {
			mu.Lock()
			statuses = append(statuses, s)
			mu.Unlock()
			observe(s)
		}
	})
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); require.NoError(t, <-h.done) }) }
	t.Cleanup(stop)

	goodOf := fmt.Sprintf("channel 291 version %d (GOOD)", good)
	h.waitFor(t, "the agent running", func(s daemon.Status) bool { return s.Agent == daemon.AgentRunning })
	_, err := h.d.Poll(ctx) // or the first poll, which runs by itself once the agent is up
	require.NoError(t, err)
	h.waitFor(t, "the trial (the agent's preflight passed 1001)", running(fmt.Sprintf("channel 291 version %d (TRIAL)", good)))
	clk.Advance(hostconfig.Default().HealthWindow.Duration)
	h.waitFor(t, "1001 marked good", running(goodOf))
	mu.Lock()
	sinceGood := len(statuses)
	mu.Unlock()

	bad := l.roll(t, "cf291-shape")
	// Validation alone, against the lying manifest, accepts the file: only
	// the agent's preflight can refuse it.
	v, err := validator.Vet(ctx, testfiles.Channel(t, "cf291-shape"), testfiles.Capabilities(t, "7.12"),
		validator.VetOptions{Options: validator.Options{Installed: &validator.Installed{Channel: 291, ContentVersion: good}}})
	require.NoError(t, err)
	require.True(t, v.Accepted(), "%v", v.Err())

	r, err := h.d.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, daemon.ActionRejected, r.Action, "the installed agent's preflight must refuse %d: %+v", bad, r)
	require.Equal(t, bad, r.Version)
	require.Contains(t, r.Why, string(validator.CodePreflightCrash))
	require.Contains(t, r.Why, "index out of range [20] with length 20")
	r, err = h.d.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, daemon.ActionSkipped, r.Action, "%+v", r)
	require.Contains(t, r.Why, "rejected earlier")

	// Upstream: rejected-preflight with the crash code, never installed.
	clk.Advance(1000 * time.Hour) // the telemetry interval
	deadline := time.After(60 * time.Second)
	for !l.reported(h.id, wire.EventRejectedPreflight, bad) {
		select {
		case <-l.got:
		case <-deadline:
			t.Fatalf("no rejected-preflight for %d; got %+v", bad, l.events[h.id])
		}
	}
	l.mu.Lock()
	for _, e := range l.events[h.id] {
		if e.Version != bad {
			continue
		}
		require.NotEqual(t, wire.EventInstalled, e.Kind, "%d was installed: %+v", bad, e)
		if e.Kind == wire.EventRejectedPreflight {
			require.Contains(t, e.Codes, string(validator.CodePreflightCrash))
		}
	}
	l.mu.Unlock()
	stop()

	// Nothing was staged or activated: the boot record holds 1001 alone,
	// active and GOOD.
	in, err := installer.Open(h.root, installer.Options{Capabilities: testfiles.Capabilities(t, "7.12"), ReadOnly: true})
	require.NoError(t, err)
	rec, err := bootguard.Read(in.RecordPath())
	in.Close()
	require.NoError(t, err)
	require.Equal(t, good, rec.Entry(rec.Active).Version)
	require.Equal(t, bootguard.StateGood, rec.Entry(rec.Active).State)
	for _, e := range rec.Slots {
		require.NotEqual(t, bad, e.Version, "%d reached a slot: %+v", bad, rec)
	}
	// The agent ran 1001 throughout: no restart, no crash.
	mu.Lock()
	defer mu.Unlock()
	for _, s := range statuses[sinceGood:] {
		require.Equal(t, daemon.AgentRunning, s.Agent, "the agent restarted: %+v", s)
		require.Equal(t, goodOf, s.Running)
		require.Empty(t, s.LastCrash)
	}
	// The host's own journal agrees: no installed event for it.
	evs, err := daemon.ReadJournal(h.root)
	require.NoError(t, err)
	var kinds []wire.EventKind
	for _, e := range evs {
		if e.Version == bad {
			kinds = append(kinds, e.Kind)
		}
	}
	require.Equal(t, []wire.EventKind{wire.EventRejectedPreflight}, kinds)
}

package daemon_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/validator"
	"github.com/ringfence/ringfence/wire"
)

// rollOn publishes testdata channel file name as version v of channel ch
// and sends every host to it.
func (l *lab) rollOn(t testing.TB, ch, v uint32, name string) {
	t.Helper()
	f, err := validator.Parse(testfiles.Channel(t, name))
	require.NoError(t, err)
	f.Channel, f.ContentVersion = ch, v
	data, err := validator.Encode(f)
	require.NoError(t, err)
	_, err = l.repo.Publish(ch, v, data)
	require.NoError(t, err)
	plan := fmt.Sprintf(`{"format":%q,"channel":%d,"stages":[{"name":"all","percent":100,"version":%d}]}`, rollout.Format, ch, v)
	require.NoError(t, l.repo.SetRollout(ch, []byte(plan)))
}

// TestTwoChannelsOneDaemon: one daemon follows channels 291 and 292 with
// one identity. Both get new content at once: 291 goes on trial first and
// 292 is staged and waits (one trial at a time); once 291 is good, the
// daemon polls at once and 292's trial runs. Then a version of 292 that crashes the agent on load: the
// guard reverts 292 alone, 291 keeps its content, and the host reports the
// revert for channel 292.
func TestTwoChannelsOneDaemon(t *testing.T) {
	bin := buildRingfenced(t)
	clk := clock.NewFake(time.Now())
	l := newLab(t, clk)
	l.rollOn(t, 291, 1001, "good-ipc-1001")
	l.rollOn(t, 292, 2001, "good-ipc-1001")
	ctx, cancel := context.WithCancel(context.Background())
	h := startHost(t, ctx, l, clk, bin, 0, func(o *daemon.Options) {
		o.Config.Channel, o.Config.Channels = 0, []uint32{292, 291}
	})
	defer func() { cancel(); require.NoError(t, <-h.done) }()
	window := hostconfig.Default().HealthWindow.Duration
	both := func(a, b string) string { return "channel 291 version " + a + "; channel 292 version " + b }

	// The first poll runs by itself once the agent is up; channels go in
	// ascending order.
	h.waitFor(t, "291 on trial", running("channel 291 version 1001 (TRIAL); channel 292: no content"))
	r, err := h.d.Poll(ctx)
	require.NoError(t, err)
	require.Len(t, r.Channels, 2, "%+v", r)
	require.Equal(t, daemon.ActionWaiting, r.Channels[0].Action, "291: in its health window")
	require.Equal(t, daemon.ActionWaiting, r.Channels[1].Action, "292: staged, waiting")
	require.Contains(t, r.Channels[1].Why, "waits for channel 291's trial")

	// When 291's window passes, the daemon polls at once: the staged 2001
	// goes on trial without waiting for the next poll interval.
	clk.Advance(window)
	h.waitFor(t, "292 on trial, by the daemon itself", running(both("1001 (GOOD)", "2001 (TRIAL)")))
	require.Equal(t, daemon.ActionInstalled, h.last.Poll.Action, "%+v", h.last.Poll)
	require.Equal(t, uint32(292), h.last.Poll.Channel)
	clk.Advance(window)
	h.waitFor(t, "both good", running(both("1001 (GOOD)", "2001 (GOOD)")))

	// 292's next version crashes the 7.11 agent while it loads.
	l.rollOn(t, 292, 2002, "cf291-shape")
	r, err = h.d.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, daemon.ActionInstalled, r.Action, "%+v", r)
	require.Equal(t, uint32(292), r.Channel)
	h.waitFor(t, "the agent's crash", func(s daemon.Status) bool { return s.Agent == daemon.AgentRestarting })
	clk.Advance(hostconfig.Default().Agent.RestartDelay.Duration)
	h.waitFor(t, "292 back on 2001, 291 untouched", running(both("1001 (GOOD)", "2001 (GOOD)")))
	r, err = h.d.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, daemon.ActionSkipped, r.Channels[1].Action, "%+v", r)
	require.Contains(t, r.Channels[1].Why, "quarantined")

	clk.Advance(1000 * time.Hour) // the telemetry interval
	deadline := time.After(60 * time.Second)
	for !(l.reportedOn(h.id, wire.EventReverted, 292, 2002) && l.reportedOn(h.id, wire.EventHealthy, 291, 1001) && l.reportedOn(h.id, wire.EventHealthy, 292, 2001) &&
		l.reportedOn(h.id, wire.EventSensorCrashed, 292, 2002)) { // the crash while loading names the channel in its trial
		select {
		case <-l.got:
		case <-deadline:
			t.Fatalf("the host did not report both channels; got %+v", l.events[h.id])
		}
	}
	require.False(t, l.reportedOn(h.id, wire.EventReverted, 291, 1001), "291 was never reverted")
	require.Len(t, l.events, 1, "one host identity for both channels")
}

// reportedOn reports whether host sent an event of kind for version v of
// channel ch.
func (l *lab) reportedOn(host string, kind wire.EventKind, ch, v uint32) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events[host] {
		if e.Kind == kind && e.Channel == ch && e.Version == v {
			return true
		}
	}
	return false
}

// TestManifestChannels: an agent whose capability manifest lists the
// channels it loads refuses a configuration that follows another.
func TestManifestChannels(t *testing.T) {
	caps := *testfiles.Capabilities(t, "7.11")
	caps.Channels = []uint32{291}
	trusted := filepath.Join(t.TempDir(), "root.json")
	require.NoError(t, os.WriteFile(trusted, []byte("{}"), 0o600))
	cfg := hostconfig.Default()
	cfg.Root, cfg.Repository, cfg.TrustedRoot, cfg.Channels = t.TempDir(), "http://127.0.0.1:1/", trusted, []uint32{291, 293}
	_, err := daemon.New(daemon.Options{Config: cfg, HostID: "h-test", Capabilities: &caps,
		AgentCommand: []string{"agent"}, PreflightCommand: []string{"preflight"}})
	require.ErrorContains(t, err, "loads channels [291] by its capability manifest; 293 is not one of them")
	cfg.Channels = []uint32{291}
	_, err = daemon.New(daemon.Options{Config: cfg, HostID: "h-test", Capabilities: &caps,
		AgentCommand: []string{"agent"}, PreflightCommand: []string{"preflight"}, TrustedRoot: []byte("{}")})
	require.NoError(t, err)
}

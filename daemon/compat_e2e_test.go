package daemon_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/compat"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/testbin"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/telemetry"
	"github.com/ringfence/ringfence/tufrepo"
	"github.com/ringfence/ringfence/wire"
)

// honest makes a host whose manifest and agent are both sensor v.
func honest(t testing.TB, bin, v string) func(*daemon.Options) {
	return func(o *daemon.Options) {
		m := filepath.Join(testfiles.Dir(), "capabilities", "sensor-"+v+".json")
		o.Capabilities = testfiles.Capabilities(t, v)
		o.AgentCommand = []string{bin, "agent", "--capabilities", m, "--alive-interval", "1h"}
		o.PreflightCommand = []string{bin, "sensor", "preflight", "--capabilities", m}
	}
}

// TestConstrainedContentThroughTheServer: the real publish command checks
// cf291-shape against a matrix of sensors 7.11 and 7.12 and publishes it
// for 7.12 only; the real rollout server rolls it out over real daemons, two
// of each sensor, a 7.11 host among the canaries. The 7.12 hosts take it;
// no 7.11 host is ever offered it (the signed plan keeps them on the old
// version, and the repository never serves them the file), not even once
// the rollout completes.
func TestConstrainedContentThroughTheServer(t *testing.T) {
	bin := buildRingfenced(t)
	serverBin := testbin.Exe(testbin.Build(t, "../cmd/ringfence-server"), "../cmd/ringfence-server")
	clk := clock.NewFake(time.Now())
	repoDir, keys := t.TempDir(), t.TempDir()
	repo, err := tufrepo.Init(repoDir, keys, tufrepo.InitOptions{Clock: clk})
	require.NoError(t, err)
	_, err = repo.Publish(291, 1001, testfiles.Channel(t, "good-ipc-1001"))
	require.NoError(t, err)
	require.NoError(t, repo.SetRollout(291, fmt.Appendf(nil, `{"format":%q,"channel":291,"stages":[{"name":"all","percent":100,"version":1001}]}`, rollout.Format)))

	out, err := exec.Command(serverBin, "publish", "--repo", repoDir, "--keys", keys, "--channel", "291",
		"--matrix", filepath.Join(testfiles.Dir(), "capabilities"), filepath.Join(testfiles.Dir(), "channels", "cf291-shape.rfch")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "sensor 7.11: refused by validation (FIELD_NOT_SUPPLIED)")
	require.Contains(t, string(out), "sensor 7.12: ok (validated, preflight passed)")
	require.Contains(t, string(out), "published channels/291/1004.rfch (257 bytes) for sensor 7.12 only")
	repo, err = tufrepo.Open(repoDir, keys, clk)
	require.NoError(t, err)
	c, err := repo.Constraint(291, 1004)
	require.NoError(t, err)
	require.Equal(t, []string{"7.12"}, c.Sensors)

	var served atomic.Int64 // downloads of 1004's bytes
	srv, l, batches := serveFleet(t, clk, repo, repoDir, keys, func(r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".1004.rfch") {
			served.Add(1)
		}
	})

	canaryToken, err := srv.CreateToken(server.TokenRequest{TTL: "1h", Tags: []string{"canary"}, MaxUses: 2})
	require.NoError(t, err)
	fleetToken, err := srv.CreateToken(server.TokenRequest{TTL: "1h"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	sensors := []string{"7.12", "7.11", "7.12", "7.11"} // hosts 0 and 1 are the canaries
	var hosts []*host
	for i, v := range sensors {
		hosts = append(hosts, startHost(t, ctx, l, clk, bin, i, honest(t, bin, v), func(o *daemon.Options) {
			o.Config.Telemetry.Interval = hostconfig.Duration{Duration: time.Minute}
			tok := fleetToken.Token
			if i < 2 {
				tok = canaryToken.Token
			}
			o.Sender.(*telemetry.Sender).EnrolmentToken = tok
		}))
	}
	defer func() {
		cancel()
		for _, h := range hosts {
			require.NoError(t, <-h.done)
		}
	}()
	goodOf := func(v uint32) string { return fmt.Sprintf("channel 291 version %d (GOOD)", v) }
	for _, h := range hosts {
		h.waitFor(t, "the agent running", func(s daemon.Status) bool { return s.Agent == daemon.AgentRunning })
		_, err := h.d.Poll(ctx)
		require.NoError(t, err)
		h.waitFor(t, "the trial running", running("channel 291 version 1001 (TRIAL)"))
	}
	clk.Advance(hostconfig.Default().HealthWindow.Duration)
	for _, h := range hosts {
		h.waitFor(t, "1001 marked good", running(goodOf(1001)))
	}
	clk.Advance(time.Minute)
	for range hosts {
		<-batches
	}

	_, v, err := srv.Start(controller.Spec{Channel: 291, To: 1004, Stages: []controller.StageSpec{
		{Name: "canary", Tags: []string{"canary"}, Bake: time.Hour, MinHosts: 1},
		{Name: "fleet", Percent: 100, MinHosts: 1}}}, "alice", "the weekly content")
	require.NoError(t, err)
	require.Equal(t, []string{"7.12"}, v.Compat.Sensors, "the server reads the constraint the content role signed")
	require.Equal(t, map[string]int{"7.11": 2, "7.12": 2}, v.Sensors, "hosts per sensor, as they report")
	require.Equal(t, []string{"7.11"}, v.Excludes)
	require.Equal(t, 1, v.Stages[0].KnownHosts, "only the 7.12 canary is in the canary stage")
	require.Equal(t, 1, v.Stages[1].KnownHosts, "and the other 7.12 host in the next")

	// Canary stage: the 7.12 canary takes it; the 7.11 canary is kept on
	// 1001 by the signed plan, as is everyone else.
	polls := func(want ...daemon.Action) {
		t.Helper()
		for i, h := range hosts {
			r, err := h.d.Poll(ctx)
			require.NoError(t, err)
			require.Equal(t, want[i], r.Action, "host %d (sensor %s): %+v", i, sensors[i], r)
			if r.Action == daemon.ActionNothing && sensors[i] == "7.11" {
				require.Equal(t, uint32(1001), r.Version, "host %d runs the old version by the plan: %+v", i, r)
			}
		}
	}
	polls(daemon.ActionInstalled, daemon.ActionNothing, daemon.ActionNothing, daemon.ActionNothing)
	hosts[0].waitFor(t, "1004 on trial, loaded by the 7.12 agent", running("channel 291 version 1004 (TRIAL)"))
	require.Equal(t, int64(1), served.Load(), "only the 7.12 canary fetched 1004")

	// Completed: every 7.12 host, and still no 7.11 host.
	for srv.Status()[0].State != controller.StateCompleted {
		_, _, err = srv.Act(291, controller.KindPromote, "alice", "the 7.12 canary is healthy")
		require.NoError(t, err)
	}
	polls(daemon.ActionWaiting, daemon.ActionNothing, daemon.ActionInstalled, daemon.ActionNothing)
	require.Equal(t, int64(2), served.Load(), "the 7.12 hosts fetched 1004, no 7.11 host did")
	for i, h := range hosts {
		if sensors[i] == "7.11" {
			require.Equal(t, goodOf(1001), h.last.Running, "host %d", i)
			rec, err := bootguard.Read(installer.RecordPathOf(h.root, 291))
			require.NoError(t, err)
			for _, s := range []bootguard.Slot{bootguard.SlotA, bootguard.SlotB} {
				require.NotEqual(t, uint32(1004), rec.Entry(s).Version, "host %d never staged 1004", i)
			}
		}
	}
}

// TestIncompatibleContentRefusedByTheHost: whatever gives a host content
// (here an admin's pin), the host refuses a version whose signed constraint
// excludes its sensor: it never downloads it, reports it as incompatible
// (not as a rejection of the content), and does not ask again this run.
func TestIncompatibleContentRefusedByTheHost(t *testing.T) {
	bin := buildRingfenced(t)
	clk := clock.NewFake(time.Now())
	l := newLab(t, clk)
	good := l.roll(t, "good-ipc-1001")
	_, err := l.repo.PublishFor(291, 1004, testfiles.Channel(t, "cf291-shape"), compat.Constraint{Sensors: []string{"7.12"}, Excluded: map[string]string{"7.11": "FIELD_NOT_SUPPLIED"}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	h := startHost(t, ctx, l, clk, bin, 0, honest(t, bin, "7.11"), func(o *daemon.Options) {
		o.Config.Pins = map[string]uint32{"291": 1004}
	})
	defer func() { cancel(); require.NoError(t, <-h.done) }()
	h.waitFor(t, "the agent running", func(s daemon.Status) bool { return s.Agent == daemon.AgentRunning })
	require.NotZero(t, good)

	// The daemon's first poll, at start, met the pin already.
	h.waitFor(t, "the pinned version refused", func(s daemon.Status) bool { return s.Poll.Action != "" })
	require.Equal(t, daemon.ActionRejected, h.last.Poll.Action, "%+v", h.last.Poll)
	require.Equal(t, "version 1004 is published for sensor 7.12 only; the installed sensor is 7.11", h.last.Poll.Why)
	r, err := h.d.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, daemon.ActionSkipped, r.Action, "not asked again this run: %+v", r)

	clk.Advance(1000 * time.Hour) // the telemetry interval
	deadline := time.After(60 * time.Second)
	for !l.reported(h.id, wire.EventIncompatible, 1004) {
		select {
		case <-l.got:
		case <-deadline:
			t.Fatalf("the host did not report the incompatible version; got %+v", l.events[h.id])
		}
	}
	require.False(t, l.reported(h.id, wire.EventRejectedValidation, 1004) || l.reported(h.id, wire.EventRejectedPreflight, 1004),
		"an incompatible version is not reported as content the host's checks refused")
	n := 0
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events[h.id] {
		if e.Kind == wire.EventIncompatible {
			n++
			require.Equal(t, map[string]string{"sensor": "7.11", "constraint": "sensor 7.12 only; excludes 7.11 (FIELD_NOT_SUPPLIED)"}, e.Evidence)
		}
	}
	require.Equal(t, 1, n, "reported once, however often the host polls")
	entries, err := os.ReadDir(filepath.Join(h.root, "downloads"))
	if err == nil {
		require.Empty(t, entries, "nothing was downloaded")
	}
}

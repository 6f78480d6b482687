package daemon_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/telemetry"
	"github.com/ringfence/ringfence/tufrepo"
	"github.com/ringfence/ringfence/validator"
	"github.com/ringfence/ringfence/wire"
)

// TestCanaryHaltThroughTheServer: real daemons and the real rollout server
// on one loopback address (repository and telemetry). Four hosts run a good
// version; a version that crashes the sensor on load is rolled out to the
// canary group (one host, by tag). The canary crashes, reverts by itself,
// reports; the server halts and rolls back, signing a plan that denies the
// version; the other three hosts never load it, and the canary never
// retries it.
func TestCanaryHaltThroughTheServer(t *testing.T) {
	bin := buildRingfenced(t)
	clk := clock.NewFake(time.Now())
	repoDir, keys := t.TempDir(), t.TempDir()
	repo, err := tufrepo.Init(repoDir, keys, tufrepo.InitOptions{Clock: clk})
	require.NoError(t, err)
	versions := map[string]uint32{}
	for _, name := range []string{"good-ipc-1001", "cf291-shape"} {
		data := testfiles.Channel(t, name)
		f, err := validator.Parse(data)
		require.NoError(t, err)
		_, err = repo.Publish(291, f.ContentVersion, data)
		require.NoError(t, err)
		versions[name] = f.ContentVersion
	}
	good, bad := versions["good-ipc-1001"], versions["cf291-shape"]
	require.NoError(t, repo.SetRollout(291, fmt.Appendf(nil, `{"format":%q,"channel":291,"stages":[{"name":"all","percent":100,"version":%d}]}`, rollout.Format, good)))

	srv, l, batches := serveFleet(t, clk, repo, repoDir, keys, nil)

	// The hosts enrol with tokens the operator issued: the canary's puts it
	// in the canary group (the server's record, not the host's say).
	canaryToken, err := srv.CreateToken(server.TokenRequest{TTL: "1h", Tags: []string{"canary"}, MaxUses: 1})
	require.NoError(t, err)
	fleetToken, err := srv.CreateToken(server.TokenRequest{TTL: "1h"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var hosts []*host
	for i := range 4 {
		hosts = append(hosts, startHost(t, ctx, l, clk, bin, i, func(o *daemon.Options) {
			o.Config.Telemetry.Interval = hostconfig.Duration{Duration: time.Minute}
			tok := fleetToken.Token
			if i == 0 {
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
	canary, others := hosts[0], hosts[1:]
	goodOf := func(v uint32) string { return fmt.Sprintf("channel 291 version %d (GOOD)", v) }

	for _, h := range hosts {
		h.waitFor(t, "the agent running", func(s daemon.Status) bool { return s.Agent == daemon.AgentRunning })
		_, err := h.d.Poll(ctx)
		require.NoError(t, err)
		h.waitFor(t, "the trial running", running(fmt.Sprintf("channel 291 version %d (TRIAL)", good)))
	}
	clk.Advance(hostconfig.Default().HealthWindow.Duration)
	for _, h := range hosts {
		h.waitFor(t, "the good version marked good", running(goodOf(good)))
	}
	// Telemetry: every host reports in, so the server knows the fleet.
	clk.Advance(time.Minute)
	for range hosts {
		<-batches
	}

	_, v, err := srv.Start(controller.Spec{Channel: 291, To: bad, Stages: []controller.StageSpec{
		{Name: "canary", Tags: []string{"canary"}, Bake: time.Hour, MinHosts: 1},
		{Name: "fleet", Percent: 100, MinHosts: 1}}}, "alice", "the weekly content")
	require.NoError(t, err)
	require.Equal(t, good, v.From, "from what the hosts report they run")

	r, err := canary.d.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, daemon.ActionInstalled, r.Action, "the canary takes it: %+v", r)
	for _, h := range others {
		r, err := h.d.Poll(ctx)
		require.NoError(t, err)
		require.NotEqual(t, daemon.ActionInstalled, r.Action, "%s is outside the canary group: %+v", h.id, r)
	}
	canary.waitFor(t, "the crash on load", func(s daemon.Status) bool { return s.Agent == daemon.AgentRestarting })
	clk.Advance(hostconfig.Default().Agent.RestartDelay.Duration)
	canary.waitFor(t, "last-known-good again, by the boot guard", running(goodOf(good)))

	// The canary's revert reaches the server: halt and rollback.
	clk.Advance(time.Minute)
	deadline := time.After(60 * time.Second)
	for {
		vs := srv.Status()
		if vs[0].State == controller.StateRolledBack {
			require.Equal(t, controller.KindHalt, vs[0].Decisions[1].Kind)
			require.Contains(t, vs[0].Decisions[1].Reason, "canary group")
			require.Equal(t, canary.id, vs[0].Decisions[1].Evidence.Host)
			require.Equal(t, []uint32{bad}, vs[0].Deny)
			break
		}
		select {
		case <-batches:
		case <-deadline:
			t.Fatalf("the server did not halt; rollout: %+v", vs[0])
		}
	}

	// Every host reads the signed rollback: nobody installs the bad
	// version, the canary never retries it.
	for _, h := range hosts {
		r, err := h.d.Poll(ctx)
		require.NoError(t, err)
		require.NotEqual(t, daemon.ActionInstalled, r.Action, "%s: %+v", h.id, r)
		require.Equal(t, goodOf(good), h.last.Running, h.id)
	}
	require.Equal(t, map[string]int{fmt.Sprint(good): 4}, srv.Status()[0].Versions, "every host reports the good version")
}

// serveFleet runs the real rollout server over the repository (repoDir,
// keys; repo its open handle) with the canary tag "canary", on one loopback
// address for the repository and telemetry alike, and returns it, the lab
// hosts start on, and a channel that receives once per telemetry batch
// handled. seen, when set, is told of every request first.
func serveFleet(t *testing.T, clk *clock.Fake, repo *tufrepo.Repo, repoDir, keys string, seen func(*http.Request)) (*server.Server, *lab, <-chan struct{}) {
	t.Helper()
	srv, err := server.New(server.Options{Repo: repoDir, Keys: keys, State: t.TempDir(), Clock: clk, CanaryTags: []string{"canary"}})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	batches := make(chan struct{}, 100)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen != nil {
			seen(r)
		}
		srv.Handler().ServeHTTP(w, r)
		if r.URL.Path == wire.Path {
			batches <- struct{}{}
		}
	}))
	t.Cleanup(hs.Close)
	root, err := repo.RootJSON()
	require.NoError(t, err)
	return srv, &lab{repo: repo, srv: hs, telemetry: hs, root: root}, batches
}

// TestDenyTakesBackAGoodVersion: a version rolled back upstream after this
// host already marked it good is left too: the host goes back to the other
// slot's good content.
func TestDenyTakesBackAGoodVersion(t *testing.T) {
	bin := buildRingfenced(t)
	clk := clock.NewFake(time.Now())
	l := newLab(t, clk)
	good := l.roll(t, "good-ipc-1001")
	ctx, cancel := context.WithCancel(context.Background())
	h := startHost(t, ctx, l, clk, bin, 0, func(o *daemon.Options) {
		// This host's agent runs the interpreter its manifest describes.
		o.AgentCommand = []string{bin, "agent", "--capabilities", filepath.Join(testfiles.Dir(), "capabilities", "sensor-7.12.json"), "--alive-interval", "1h"}
	})
	defer func() { cancel(); require.NoError(t, <-h.done) }()
	h.waitFor(t, "the agent running", func(s daemon.Status) bool { return s.Agent == daemon.AgentRunning })
	trialOf := func(v uint32) string { return fmt.Sprintf("channel 291 version %d (TRIAL)", v) }
	goodOf := func(v uint32) string { return fmt.Sprintf("channel 291 version %d (GOOD)", v) }
	// 1002 is published only once 1001 is good: a slice literal would
	// publish it before the first poll, which could then take 1002 at once.
	for i := range 2 {
		v := good
		if i == 1 {
			v = l.roll(t, "good-ipc-1002")
		}
		_, err := h.d.Poll(ctx)
		require.NoError(t, err)
		h.waitFor(t, "the trial", running(trialOf(v)))
		clk.Advance(hostconfig.Default().HealthWindow.Duration)
		h.waitFor(t, "marked good", running(goodOf(v)))
	}
	require.NoError(t, l.repo.SetRollout(291, fmt.Appendf(nil, `{"format":%q,"channel":291,"stages":[{"name":"fleet","percent":100,"version":%d}],"deny":[1002]}`, rollout.Format, good)))
	r, err := h.d.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, daemon.ActionReverted, r.Action, "%+v", r)
	h.waitFor(t, "the older good version again", running(goodOf(good)))
	r, err = h.d.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, daemon.ActionNothing, r.Action, "settled on the plan's version: %+v", r)
}

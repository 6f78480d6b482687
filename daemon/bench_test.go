package daemon_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/validator"
)

// versionOf returns testdata's channel file name as content version v.
func versionOf(t testing.TB, name string, v uint32) []byte {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(testfiles.Dir(), "channels", "src", name+".json"))
	require.NoError(t, err)
	f, err := validator.DecodeSource(src)
	require.NoError(t, err)
	f.ContentVersion = v
	b, err := validator.Encode(f)
	require.NoError(t, err)
	return b
}

func (l *lab) publish(t testing.TB, data []byte) uint32 {
	t.Helper()
	f, err := validator.Parse(data)
	require.NoError(t, err)
	_, err = l.repo.Publish(291, f.ContentVersion, data)
	require.NoError(t, err)
	plan := fmt.Sprintf(`{"format":"ringfence-rollout/v1","channel":291,"stages":[{"name":"all","percent":100,"version":%d}]}`, f.ContentVersion)
	require.NoError(t, l.repo.SetRollout(291, []byte(plan)))
	return f.ContentVersion
}

// BenchmarkPublishToRunning: from a version published (content and plan
// signed) to the host running it as a trial: TUF refresh, plan, download,
// validation, preflight in a child process, stage, activate, agent restart
// and its load. The health window is not included. One host, loopback.
func BenchmarkPublishToRunning(b *testing.B) {
	bin := buildRingfenced(b)
	clk := clock.NewFake(time.Now())
	l := newLab(b, clk)
	v := l.publish(b, versionOf(b, "good-ipc-1001", 5000))
	ctx, cancel := context.WithCancel(context.Background())
	h := startHost(b, ctx, l, clk, bin, 0)
	defer func() { cancel(); <-h.done }()
	h.waitFor(b, "the first version", running(fmt.Sprintf("channel 291 version %d (TRIAL)", v)))
	clk.Advance(time.Hour) // past the health window
	h.waitFor(b, "good", running(fmt.Sprintf("channel 291 version %d (GOOD)", v)))
	b.ResetTimer()
	for i := range b.N {
		v := l.publish(b, versionOf(b, "good-ipc-1001", uint32(5001+i)))
		_, err := h.d.Poll(ctx)
		require.NoError(b, err)
		h.waitFor(b, "the new trial", running(fmt.Sprintf("channel 291 version %d (TRIAL)", v)))
		b.StopTimer()
		clk.Advance(time.Hour)
		h.waitFor(b, "good", running(fmt.Sprintf("channel 291 version %d (GOOD)", v)))
		b.StartTimer()
	}
}

// BenchmarkCrashToLastKnownGood: from the agent's crash on a new version
// (on its load) to the host running last-known-good again: the daemon sees
// the exit, restarts the agent (the restart delay is not included: the
// test's clock jumps over it), the loader falls back by itself, the agent
// reports its load.
func BenchmarkCrashToLastKnownGood(b *testing.B) {
	bin := buildRingfenced(b)
	clk := clock.NewFake(time.Now())
	l := newLab(b, clk)
	good := l.publish(b, versionOf(b, "good-ipc-1001", 5000))
	ctx, cancel := context.WithCancel(context.Background())
	h := startHost(b, ctx, l, clk, bin, 0)
	defer func() { cancel(); <-h.done }()
	goodRunning := running(fmt.Sprintf("channel 291 version %d (GOOD)", good))
	h.waitFor(b, "trial", func(s daemon.Status) bool {
		return strings.HasSuffix(s.Running, "(TRIAL)") && s.Agent == daemon.AgentRunning
	})
	clk.Advance(time.Hour)
	h.waitFor(b, "good", goodRunning)
	for i := range b.N {
		b.StopTimer()
		l.publish(b, versionOf(b, "cf291-shape", uint32(6000+i)))
		_, err := h.d.Poll(ctx)
		require.NoError(b, err)
		h.waitFor(b, "the crash", func(s daemon.Status) bool { return s.Agent == daemon.AgentRestarting })
		b.StartTimer()
		clk.Advance(time.Hour) // the restart delay, at once
		h.waitFor(b, "last-known-good again", goodRunning)
	}
}

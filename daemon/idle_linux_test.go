package daemon_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/internal/await"
	"github.com/ringfence/ringfence/internal/clock"
)

// procStat returns a process's CPU time (the sum of its threads' run time
// from schedstat, in nanoseconds, where /proc/PID/stat counts 10 ms ticks)
// and resident set.
func procStat(t testing.TB, pid int) (cpu time.Duration, rss int64) {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	require.NoError(t, err)
	require.NotEmpty(t, tasks, "process %d is gone", pid)
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			continue // a thread that ended
		}
		ns, _ := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
		cpu += time.Duration(ns)
	}
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(s), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			rss = kb << 10
		}
	}
	return cpu, rss
}

// childOf finds the pid of a child process of pid.
func childOf(t testing.TB, pid int, log *bytes.Buffer) int {
	t.Helper()
	// Any of the Go runtime's threads may have started it.
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	require.NoError(t, err)
	var f []string
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		f = append(f, strings.Fields(string(b))...)
	}
	require.NotEmpty(t, f, "no agent process; ringfenced said:\n%s", log)
	c, _ := strconv.Atoi(f[0])
	return c
}

// BenchmarkIdle runs the real ringfenced (default poll interval, 1-minute
// telemetry) against a loopback repository, lets it install and settle, and
// measures a 65-second window of idleness: CPU per hour and resident memory
// of the daemon and of the reference agent it supervises (which evaluates
// 200 events a second: the sensor's work, not the updater's).
func BenchmarkIdle(b *testing.B) {
	bin := buildRingfenced(b)
	clk := clock.NewFake(time.Now())
	l := newLab(b, clk)
	l.publish(b, versionOf(b, "good-ipc-1001", 5000))
	dir := b.TempDir()
	require.NoError(b, os.WriteFile(filepath.Join(dir, "root.json"), l.root, 0o600))
	cfg := filepath.Join(dir, "ringfenced.toml")
	require.NoError(b, os.WriteFile(cfg, []byte(fmt.Sprintf(`root = %q
repository = %q
trusted_root = "root.json"
channel = 291
log_level = "warn"
[telemetry]
endpoint = %q
`, filepath.Join(dir, "root"), l.srv.URL, l.telemetry.URL)), 0o600))
	for range b.N {
		cmd := exec.Command(bin, "run", "--config", cfg)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		require.NoError(b, cmd.Start())
		stop := func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }
		b.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
		})
		// Wait for the install and the trial's load (status file), then
		// measure: a benchmark's set-up, bounded by a deadline.
		status := filepath.Join(dir, "root", daemon.StatusDir, daemon.StatusName)
		await.Until(b, time.Minute, 100*time.Millisecond, func() error {
			var st daemon.Status
			raw, err := os.ReadFile(status)
			if err == nil {
				err = json.Unmarshal(raw, &st)
			}
			if err == nil && (st.Agent != daemon.AgentRunning || !strings.HasSuffix(st.Running, "(TRIAL)")) {
				err = fmt.Errorf("agent %s, running %q", st.Agent, st.Running)
			}
			return err
		}, "no trial running within a minute:\n%s", &stderr)
		agent := childOf(b, cmd.Process.Pid, &stderr)
		d0, _ := procStat(b, cmd.Process.Pid)
		a0, _ := procStat(b, agent)
		const window = 65 * time.Second // one telemetry flush and heartbeat included
		time.Sleep(window)
		d1, drss := procStat(b, cmd.Process.Pid)
		a1, arss := procStat(b, agent)
		stop()
		perHour := float64(time.Hour / window)
		b.ReportMetric((d1-d0).Seconds()*perHour, "daemon-cpu-s/h")
		b.ReportMetric(float64(drss)/(1<<20), "daemon-rss-MiB")
		b.ReportMetric((a1-a0).Seconds()*perHour, "agent-cpu-s/h")
		b.ReportMetric(float64(arss)/(1<<20), "agent-rss-MiB")
	}
}

package main

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/testbin"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/sensor"
)

// TestAgentHealthLines runs the agent as the daemon does, as a process on
// a root with content: after "ready" it prints health lines the daemon
// reads (daemon.ParseHealthLine), whose counters only grow, and in which
// every event it counts has its latency counted in one bucket.
func TestAgentHealthLines(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no Go toolchain to build the agent with (the Windows test binaries run under Wine without one)")
	}
	bin := testbin.Exe(testbin.Build(t, "."), ".")
	root := testtmp.Dir(t)
	in, err := installer.Open(root, installer.Options{Capabilities: testfiles.Capabilities(t, "7.12")})
	require.NoError(t, err)
	_, _, err = in.Install(testfiles.Channel(t, "good-ipc-1001"), installer.StageOptions{})
	require.NoError(t, err)
	_, err = in.Boot(true)
	require.NoError(t, err)
	require.NoError(t, in.Close())

	cmd := exec.Command(bin, "agent", "--root", root, "--capabilities", filepath.Join(testfiles.Dir(), "capabilities", "sensor-7.12.json"),
		"--alive-interval", "1h", "--health-interval", "100ms")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	deadline := time.After(60 * time.Second)
	next := func() string {
		t.Helper()
		select {
		case line, ok := <-lines:
			require.True(t, ok, "the agent exited: %s", stderr.String())
			return line
		case <-deadline:
			t.Fatalf("the agent said too little in 60 s: %s", stderr.String())
		}
		return ""
	}
	require.True(t, strings.HasPrefix(next(), daemon.LineReady+" "))
	var last sensor.Meter
	for n := 0; n < 3; {
		line := next()
		if !strings.HasPrefix(line, daemon.LineHealth+" ") {
			continue
		}
		m, err := daemon.ParseHealthLine(line)
		require.NoError(t, err, line)
		_, err = m.Sub(last)
		require.NoError(t, err, "the counters went back: %+v after %+v", m, last)
		var counted uint64
		for _, c := range m.Latency {
			counted += c
		}
		require.Equal(t, m.Events, counted, "every event's latency is counted once")
		last = m
		n++
	}
	require.Positive(t, last.Events, "the agent evaluates events for its content")
	require.Positive(t, last.Busy)
}

package main

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/testbin"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/internal/testtmp"
)

// TestAgentCleanStop runs the agent as the daemon does, as a process, on a
// root whose channel 291 has 1002 on trial (two tries) over 1001. An agent
// stopped with SIGINT or SIGTERM records the clean stop (breadcrumb STOPPED)
// before it exits 0, and the next start loads the trial without spending a
// try. An agent that is killed records nothing: the next start finds the
// breadcrumb LOADED and spends a try, and after the last one the trial is
// reverted (tries-exhausted).
func TestAgentCleanStop(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has no signal a child without a console can catch: the daemon kills the agent there, which records no clean stop")
	}
	bin := testbin.Exe(testbin.Build(t, "."), ".")
	caps := filepath.Join(testfiles.Dir(), "capabilities", "sensor-7.11.json")
	root := testtmp.Dir(t)
	in, err := installer.Open(root, installer.Options{Capabilities: testfiles.Capabilities(t, "7.11")})
	require.NoError(t, err)
	_, _, err = in.Install(testfiles.Channel(t, "good-ipc-1001"), installer.StageOptions{})
	require.NoError(t, err)
	_, err = in.Boot(true)
	require.NoError(t, err)
	_, err = in.MarkGood()
	require.NoError(t, err)
	_, _, err = in.Install(testfiles.Channel(t, "good-ipc-1002"), installer.StageOptions{})
	require.NoError(t, err)
	require.NoError(t, in.Close())

	active := func() bootguard.Entry {
		t.Helper()
		r, err := bootguard.Read(installer.RecordPathOf(root, 291))
		require.NoError(t, err)
		return *r.Entry(r.Active)
	}
	// run starts the agent, waits for its "ready" line, stops it with sig
	// and returns the ready line and how it exited.
	run := func(sig os.Signal) (ready string, exit error) {
		t.Helper()
		cmd := exec.Command(bin, "agent", "--root", root, "--capabilities", caps, "--alive-interval", "1h")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		lines := make(chan string)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		select {
		case line, ok := <-lines:
			require.True(t, ok, "the agent exited before its load finished: %s", stderr.String())
			ready = line
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("no ready line from the agent in 30 s: %s", stderr.String())
		}
		require.True(t, strings.HasPrefix(ready, "ready "), "first line %q", ready)
		require.NoError(t, cmd.Process.Signal(sig))
		for range lines { // the rest of stdout, until the process closes it
		}
		exit = cmd.Wait()
		if sig != os.Kill {
			require.Empty(t, stderr.String(), "a clean stop says nothing on stderr")
		}
		return ready, exit
	}

	// The first start spends a try; each clean stop after it spends none.
	for i, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM, os.Interrupt} {
		ready, err := run(sig)
		require.NoError(t, err, "stop %d (%v): the agent exits 0", i+1, sig)
		require.Contains(t, ready, "channel=291 version=1002 slot=b why=trial")
		e := active()
		require.Equal(t, bootguard.CrumbStopped, e.Crumb, "stop %d (%v) is recorded", i+1, sig)
		require.Equal(t, uint8(1), e.Tries, "start %d spent no try after the first", i+1)
	}

	// Killed (a crash, or a stop that was not clean): nothing is recorded,
	// and the start after it spends the last try.
	_, err = run(os.Kill)
	var exitErr *exec.ExitError
	require.True(t, errors.As(err, &exitErr), "killed: %v", err)
	e := active()
	require.Equal(t, bootguard.CrumbLoaded, e.Crumb, "a killed agent records no clean stop")
	require.Equal(t, uint8(1), e.Tries, "the start after the clean stop spent no try")

	ready, err := run(os.Kill)
	require.Error(t, err)
	require.Contains(t, ready, "version=1002 slot=b why=trial")
	e = active()
	require.Equal(t, bootguard.CrumbLoaded, e.Crumb)
	require.Equal(t, uint8(0), e.Tries, "the start after a kill spent a try")

	ready, err = run(os.Interrupt)
	require.NoError(t, err)
	require.Contains(t, ready, "channel=291 version=1001 slot=a why=tries-exhausted")
	e = active()
	require.Equal(t, bootguard.StateGood, e.State)
	require.Equal(t, bootguard.CrumbNone, e.Crumb, "a clean stop of GOOD content records nothing")
}

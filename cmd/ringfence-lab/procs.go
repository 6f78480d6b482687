package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// proc is one child process the lab started: the server or a daemon.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited and been waited for
	err  error         // its exit, once done is closed
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// procs holds every child the lab started, so that every exit path stops
// them all: an error, Ctrl-C, a panic in the lab.
type procs struct {
	mu   sync.Mutex
	list []*proc
}

// start starts cmd with its output appended to logPath.
func (ps *procs) start(name string, cmd *exec.Cmd, logPath string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = logf, logf
	ownGroup(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop interrupts the given processes at once, waits up to grace for them
// all, then kills what is left. It returns the ones that had to be killed.
func stop(list []*proc, grace time.Duration) []string {
	for _, p := range list {
		if !p.exited() {
			_ = interrupt(p.cmd.Process)
		}
	}
	deadline := time.After(grace)
	var killed []string
	for _, p := range list {
		select {
		case <-p.done:
		case <-deadline:
			deadline = closedTime
		}
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
			killed = append(killed, p.name)
		}
	}
	return killed
}

// closedTime is a channel that is always ready: once the grace period is
// over, the rest are not waited for.
var closedTime = func() <-chan time.Time {
	c := make(chan time.Time)
	close(c)
	return c
}()

// daemonPrefix starts the name of every ringfenced the lab runs.
const daemonPrefix = "ringfenced "

// stopAll stops the daemons first (each stops its agent), then the rest.
func (ps *procs) stopAll(grace time.Duration) []string {
	ps.mu.Lock()
	list := ps.list
	ps.list = nil
	ps.mu.Unlock()
	var daemons, others []*proc
	for _, p := range list {
		if strings.HasPrefix(p.name, daemonPrefix) {
			daemons = append(daemons, p)
		} else {
			others = append(others, p)
		}
	}
	return append(stop(daemons, grace), stop(others, grace)...)
}

// runTool runs a short command (repo init, publish) in dir (when not empty)
// to its end, with its output in a log file; it returns the output too.
func runTool(ctx context.Context, dir, logPath, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	ownGroup(cmd)
	cmd.Cancel = func() error { return interrupt(cmd.Process) }
	cmd.WaitDelay = 10 * time.Second
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if f, ferr := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); ferr == nil {
		fmt.Fprintf(f, "$ %s %s\n%s", name, strings.Join(args, " "), out.String())
		f.Close()
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return out.String(), fmt.Errorf("run %s: %w", name, err)
	}
	return out.String(), err
}

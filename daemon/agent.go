package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// The agent's line protocol on its stdout (docs/ringfenced.md): "ready"
// once its load has finished (the loader contract's LOADED), then "alive"
// now and then. Anything else is logged. Lines are bounded.
const (
	LineReady   = "ready"
	LineAlive   = "alive"
	maxLine     = 4 << 10
	stderrLines = 20 // the agent's last stderr lines kept as crash evidence
)

// EnvRoot tells the agent the Ringfence root to load from.
const EnvRoot = "RINGFENCE_ROOT"

// agent is one run of the supervised agent process.
type agent struct {
	cmd    *exec.Cmd
	ready  chan struct{} // closed at the first "ready" line
	exited chan struct{} // closed when the process has exited; then err is set
	err    error

	mu   sync.Mutex
	tail []string // last stderr lines
}

// startAgent starts command with root in its environment.
func startAgent(command []string, root string, logLine func(stream, line string)) (*agent, error) {
	if len(command) == 0 {
		return nil, errors.New("daemon: no agent command")
	}
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Env = append(os.Environ(), EnvRoot+"="+root)
	cmd.WaitDelay = 5 * time.Second
	ownGroup(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("daemon: start the agent %q: %w (check agent.command in the configuration)", command[0], err)
	}
	a := &agent{cmd: cmd, ready: make(chan struct{}), exited: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		once := sync.Once{}
		scanLines(stdout, func(line string) {
			switch {
			case line == LineReady || strings.HasPrefix(line, LineReady+" "):
				once.Do(func() { close(a.ready) })
				logLine("agent", line)
			case line == LineAlive || strings.HasPrefix(line, LineAlive+" "):
			default:
				logLine("agent", line)
			}
		})
	}()
	go func() {
		defer wg.Done()
		scanLines(stderr, func(line string) {
			a.mu.Lock()
			a.tail = append(a.tail, line)
			if len(a.tail) > stderrLines {
				a.tail = a.tail[1:]
			}
			a.mu.Unlock()
			logLine("agent-stderr", line)
		})
	}()
	go func() {
		wg.Wait() // the pipes are drained before Wait, as os/exec requires
		a.err = cmd.Wait()
		close(a.exited)
	}()
	return a, nil
}

// scanLines calls fn for each line of r, cutting lines at maxLine bytes,
// until r ends.
func scanLines(r io.Reader, fn func(string)) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, isPrefix, err := br.ReadLine()
		if len(line) > 0 || (err == nil && !isPrefix) {
			fn(strings.TrimRight(string(line), "\r"))
		}
		for isPrefix && err == nil { // drop the rest of an overlong line
			_, isPrefix, err = br.ReadLine()
		}
		if err != nil {
			return
		}
	}
}

// evidence is the agent's last stderr lines, joined.
func (a *agent) evidence() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.tail, "\n")
}

// stop asks the agent to stop (os.Interrupt where the platform has it,
// then kill after grace) and waits for it. It reports whether the daemon
// ended the running agent at once because the platform cannot ask it to
// stop (Windows): the agent then had no chance to record a clean stop
// itself.
func (a *agent) stop(ctx context.Context, grace time.Duration) (killedAtOnce bool) {
	select {
	case <-a.exited:
		return false
	default:
	}
	if err := interruptAgent(a.cmd.Process); err != nil {
		_ = a.cmd.Process.Kill()
		<-a.exited
		return true
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-a.exited:
	case <-t.C:
		_ = a.cmd.Process.Kill()
		<-a.exited
	case <-ctx.Done():
		_ = a.cmd.Process.Kill()
		<-a.exited
	}
	return false
}

// interruptAgent is interrupt; the tests replace it to take Windows's path.
var interruptAgent = interrupt

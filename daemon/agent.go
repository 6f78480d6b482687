package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/ringfence/ringfence/sensor"
)

// The agent's line protocol on its stdout (docs/ringfenced.md): "ready"
// once its load has finished (the loader contract's LOADED), then "alive"
// now and then, and "health" lines with its counters (LineHealth).
// Anything else is logged. Lines are bounded.
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

	// proc measures the process from outside (nil where the platform
	// cannot); it is closed once the process has exited.
	proc *proc

	mu      sync.Mutex
	tail    []string     // last stderr lines
	meter   sensor.Meter // the counters of its last health line
	metered bool         // it printed one
}

// startAgent starts command with root in its environment. Its lines go to
// log (debug), except what the daemon must act on; onHealth, when set, is
// called with each health reading the agent prints.
func startAgent(command []string, root string, log *slog.Logger, onHealth func(sensor.Meter)) (*agent, error) {
	logLine := func(stream, line string) { log.Debug(line, "from", stream) }
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
	// Before anything can reap the process: its pid is its own until then.
	if p, err := openProc(cmd.Process.Pid); err == nil {
		a.proc = p
	} else if !errors.Is(err, errors.ErrUnsupported) {
		log.Warn("the agent's CPU and memory cannot be measured; its health goes unreported", "err", err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		once, healthOnce := sync.Once{}, sync.Once{}
		scanLines(stdout, func(line string) {
			switch {
			case line == LineReady || strings.HasPrefix(line, LineReady+" "):
				once.Do(func() { close(a.ready) })
				logLine("agent", line)
			case line == LineAlive || strings.HasPrefix(line, LineAlive+" "):
			case strings.HasPrefix(line, LineHealth+" "):
				m, err := ParseHealthLine(line)
				if err != nil {
					healthOnce.Do(func() {
						log.Warn("the agent's health line is not understood; its health goes unreported (docs/ringfenced.md, \"The agent\")", "line", line, "err", err)
					})
					return
				}
				a.mu.Lock()
				a.meter, a.metered = m, true
				a.mu.Unlock()
				if onHealth != nil {
					onHealth(m)
				}
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

// reading returns the counters of the agent's last health line, and
// whether it printed one.
func (a *agent) reading() (sensor.Meter, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.meter, a.metered
}

// release lets go of what measures the process; call it once the process
// has exited.
func (a *agent) release() {
	if a.proc != nil {
		a.proc.close()
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

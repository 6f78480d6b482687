package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/wire"
)

// supervisor runs the agent, one process at a time: it starts it, gives
// its load agent.start_timeout to report ready, and restarts it when it
// dies, after agent.restart_delay, doubled at each crash up to a minute
// and reset by a load that succeeds. What the agent loads is the boot
// guard's business, not the supervisor's.
type supervisor struct {
	cfg      *hostconfig.Config // Root, Agent.StartTimeout, Agent.RestartDelay
	command  []string           // Options.AgentCommand
	onReady  func()             // Options.OnReady
	onHealth func(sensor.Meter) // Options.ObserveHealth
	clock    clock.Clock
	log      *slog.Logger

	agent        *agent           // the running process; nil when none runs
	ready        bool             // it reported its load: the root is the daemon's again
	stopping     bool             // the daemon stopped it on purpose: its exit is no crash
	readyOnce    bool             // onReady was called
	startTimeout <-chan time.Time // its load's deadline
	restartC     <-chan time.Time // when to start it again after a crash or a failed start
	restartDelay time.Duration    // the next restart's delay
}

// maxRestartDelay caps the backoff of an agent that keeps dying.
const maxRestartDelay = time.Minute

// stopGrace is how long a stopped agent has to exit before it is killed.
const stopGrace = 10 * time.Second

// start starts the agent; the root must be free for its loader. When it
// cannot start, a new try is scheduled after the backoff.
func (s *supervisor) start() error {
	s.ready, s.stopping = false, false
	a, err := startAgent(s.command, s.cfg.Root, s.log, s.onHealth)
	if err != nil {
		s.log.Error("agent", "err", err)
		s.agent = nil
		s.restartC = s.clock.After(s.nextRestartDelay())
		return err
	}
	s.agent = a
	s.startTimeout = s.clock.After(s.cfg.Agent.StartTimeout.Duration)
	return nil
}

// stop stops the agent on purpose and waits for it. Where the platform
// cannot ask the agent to stop (Windows), the daemon kills it and records
// the clean stop for it: the agent had finished its load and was killed by
// the daemon, not by its content, so the trial's next load spends no try
// (docs/boot-record.md, "A clean stop"). On Linux the agent records it
// itself, on SIGINT.
func (s *supervisor) stop() {
	if s.agent == nil {
		return
	}
	s.stopping = true
	wasReady := s.ready
	if s.agent.stop(context.Background(), stopGrace) && wasReady {
		s.markStopped()
	}
	s.agent.release()
	s.agent, s.ready, s.startTimeout = nil, false, nil
}

// markStopped records a clean stop in the boot record of every channel
// followed (it changes only a trial whose load finished).
func (s *supervisor) markStopped() {
	for _, ch := range s.cfg.Followed() {
		if err := bootguard.MarkStopped(installer.RecordPathOf(s.cfg.Root, ch)); err != nil {
			s.log.Warn("could not record the agent's clean stop; its trial's next load spends a try", "channel", ch, "err", err)
		}
	}
}

// waiting returns what the loop waits for from the running agent: its
// load (until it reported it) and its exit. Both are nil when none runs.
func (s *supervisor) waiting() (ready, exited <-chan struct{}) {
	if s.agent == nil {
		return nil, nil
	}
	if !s.ready {
		ready = s.agent.ready
	}
	return ready, s.agent.exited
}

// starting reports whether the agent is loading (the root is its).
func (s *supervisor) starting() bool { return s.agent != nil && !s.ready }

// loaded: the agent reported its load. The backoff starts over, and the
// first load of this run calls onReady.
func (s *supervisor) loaded() {
	s.ready, s.startTimeout = true, nil
	s.restartDelay = s.cfg.Agent.RestartDelay.Duration
	if !s.readyOnce {
		s.readyOnce = true
		if s.onReady != nil {
			s.onReady()
		}
	}
}

// timedOut: the agent did not report its load in time. It is killed; its
// exit restarts it.
func (s *supervisor) timedOut() {
	s.log.Error("the agent did not report its load in time; stopping it", "start_timeout", s.cfg.Agent.StartTimeout)
	s.startTimeout = nil
	_ = s.agent.cmd.Process.Kill()
}

// exited: the agent's process ended. Unless the daemon stopped it, that is
// a crash, and its restart is scheduled after the backoff. It returns the
// run that ended, whether it crashed, and whether it had reported its load.
func (s *supervisor) exited() (a *agent, crashed, wasReady bool) {
	a, wasReady = s.agent, s.ready
	a.release()
	s.agent, s.ready, s.startTimeout = nil, false, nil
	if s.stopping {
		return a, false, wasReady
	}
	delay := s.nextRestartDelay()
	s.log.Error("the agent died; the boot guard decides what it loads next", "err", a.err, "restart_in", delay, "stderr", a.evidence())
	s.restartC = s.clock.After(delay)
	return a, true, wasReady
}

func (s *supervisor) nextRestartDelay() time.Duration {
	delay := s.restartDelay
	s.restartDelay = min(2*s.restartDelay, maxRestartDelay)
	return delay
}

// startAgent releases the root and starts the agent; when it does not
// start, the daemon takes the root back until the next try.
func (d *Daemon) startAgent() {
	d.close()
	if err := d.sup.start(); err != nil {
		_ = d.open()
		return
	}
	d.setStatus(func(s *Status) { s.Agent = AgentStarting })
}

// stopAgent stops the agent on purpose. A trial's health window stops with
// it: the window starts over when the agent has loaded again.
func (d *Daemon) stopAgent() {
	d.health.end()
	d.sup.stop()
	d.trial.stopWindow()
}

func (d *Daemon) restartAgent() {
	d.stopAgent()
	d.startAgent()
}

// onExit: the agent died (or was stopped). A crash is reported with the
// agent's last words; the guard decides at its next start what it loads.
func (d *Daemon) onExit() {
	d.health.end()
	d.trial.stopWindow()
	a, crashed, wasReady := d.sup.exited()
	if !crashed {
		return
	}
	during := "load"
	if wasReady {
		during = "run"
	}
	ev := wire.Event{Kind: wire.EventSensorCrashed, Reason: fmt.Sprint(a.err),
		Evidence: map[string]string{"stderr": a.evidence(), "during": during}}
	if t := d.trial.info; t != nil {
		ev.Channel, ev.Version = t.channel, t.version
	} else {
		// A crash while loading comes before the trial's window: the
		// channel in its trial is the one (one trial at a time).
		for _, ch := range d.cfg.Followed() {
			if e, ok := activeEntry(readBoot(installer.RecordPathOf(d.cfg.Root, ch))); ok && e.State == bootguard.StateTrial {
				ev.Channel, ev.Version = ch, e.Version
				break
			}
		}
	}
	d.out.add(ev)
	d.setStatus(func(s *Status) { s.Agent = AgentRestarting; s.LastCrash = a.evidence() })
}

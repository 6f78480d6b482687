// Package daemon is ringfenced's update loop. One goroutine owns the root:
// it polls the TUF repository on a jittered interval (or on demand), takes
// the content version the rollout plan and the local policy give this host,
// downloads it, checks it against the installed interpreter's capabilities,
// preflights it, stages and activates it as a trial, restarts the agent so
// the loader loads it, and marks it good when the agent has run for the
// health window. Reverts are the boot guard's: the daemon only restarts an
// agent that died, and reports what the guard decided.
//
// The daemon holds the root (state.db) open except while the agent starts:
// the agent's loader opens the same root, and bbolt allows one process at a
// time. Every step queues telemetry in state.db's outbox first; a sender
// ships it when the daemon holds the root.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/telemetry"
	"github.com/ringfence/ringfence/tuf"
	"github.com/ringfence/ringfence/validator"
	"github.com/ringfence/ringfence/wire"
)

// Clock is the daemon's time: Now, and timers that fire once.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Sender ships queued telemetry; telemetry.Sender is one. The daemon calls
// it only while it holds state.db, and hands it the outbox then. SetInfo
// gives it what each batch says of the host: the tags it asks for and the
// version it runs. Admission is the host's standing as the server said.
type Sender interface {
	Due(now time.Time) bool
	Flush(ctx context.Context, outbox telemetry.Outbox) (int, error)
	SetInfo(func() (tags []string, versions map[string]uint32))
	Admission() wire.Admission
}

// Options configure a Daemon.
type Options struct {
	Config hostconfig.Config
	// HostID is this host's identity (telemetry.Identity.HostID); it
	// decides the host's rollout bucket.
	HostID string
	// Capabilities of the installed interpreter: content is validated
	// against them.
	Capabilities *validator.Capabilities
	// AgentCommand starts the supervised agent; PreflightCommand runs one
	// file in the interpreter (the path is appended).
	AgentCommand     []string
	PreflightCommand []string
	// TrustedRoot is the root.json installed with the agent.
	TrustedRoot []byte
	// Sender ships telemetry; nil keeps it queued.
	Sender     Sender
	HTTPClient *http.Client
	Log        *slog.Logger
	Clock      Clock
	// Rand draws the poll jitter; nil means a random seed.
	Rand *rand.Rand
	// Binary, when set, updates ringfenced itself.
	Binary *BinaryUpdate
	// OnReady, when set, is called once, the first time the agent reports
	// its load: the daemon is up (agentupdate.Confirm goes here).
	OnReady func()
	// Observe, when set, is called with every new status (tests watch the
	// loop through it). It runs on the loop's goroutine: it must not block.
	Observe func(Status)
}

// Daemon is the update loop for one root.
type Daemon struct {
	cfg    hostconfig.Config
	opts   Options
	log    *slog.Logger
	clock  Clock
	rand   *rand.Rand
	client *tuf.Client

	in    *installer.Installer // open except while the agent starts
	queue []wire.Event         // events not yet in the outbox

	agent        *agent
	agentReady   bool
	stopping     bool // the daemon stopped the agent on purpose
	startTimeout <-chan time.Time
	restartC     <-chan time.Time
	restartDelay time.Duration
	healthC      <-chan time.Time
	trial        *trialInfo // the trial in its health window
	pollDeferred bool
	restart      bool // a new binary is in place
	readyOnce    bool

	reported map[string]bool        // revert events already queued, by id
	rejected map[uint32]string      // versions refused this run, and why
	pollNow  chan chan<- PollResult // on-demand polls
	stopped  chan struct{}          // closed when Run returns
	status   Status
}

type trialInfo struct {
	channel, version uint32
	slot             bootguard.Slot
}

// New checks opts and prepares the TUF client; nothing runs until Run.
func New(opts Options) (*Daemon, error) {
	if err := opts.Config.Check(); err != nil {
		return nil, fmt.Errorf("daemon: configuration: %w", err)
	}
	switch {
	case opts.HostID == "":
		return nil, errors.New("daemon: no host id")
	case opts.Capabilities == nil:
		return nil, errors.New("daemon: no interpreter capabilities")
	case len(opts.AgentCommand) == 0 || len(opts.PreflightCommand) == 0:
		return nil, errors.New("daemon: no agent or preflight command")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = systemClock{}
	}
	if opts.Rand == nil {
		opts.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	root := opts.Config.Root
	client, err := tuf.New(tuf.Options{
		Dir:         filepath.Join(root, "tuf"),
		DownloadDir: filepath.Join(root, "downloads"),
		TrustedRoot: opts.TrustedRoot,
		MetadataURL: joinURL(opts.Config.Repository, "metadata/"),
		TargetsURL:  joinURL(opts.Config.Repository, "targets/"),
		HTTPClient:  opts.HTTPClient,
		Clock:       opts.Clock.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("daemon: TUF client: %w", err)
	}
	d := &Daemon{
		cfg: opts.Config, opts: opts, log: opts.Log, clock: opts.Clock, rand: opts.Rand, client: client,
		restartDelay: opts.Config.Agent.RestartDelay.Duration,
		reported:     map[string]bool{}, rejected: map[uint32]string{},
		pollNow: make(chan chan<- PollResult), stopped: make(chan struct{}),
	}
	if opts.Sender != nil {
		opts.Sender.SetInfo(d.telemetryInfo)
	}
	return d, nil
}

// telemetryInfo is what every telemetry batch says of the host: its tags,
// and the version of its channel the boot record has active (none when it
// runs no content).
func (d *Daemon) telemetryInfo() ([]string, map[string]uint32) {
	// Version 0 is "no content": the host is on the channel and counts in
	// a first rollout's stages.
	versions := map[string]uint32{strconv.FormatUint(uint64(d.cfg.Channel), 10): 0}
	if rec, err := bootguard.Read(filepath.Join(d.cfg.Root, installer.RecordName)); err == nil && rec.Active != bootguard.SlotNone {
		e := rec.Entry(rec.Active)
		versions[strconv.FormatUint(uint64(e.Channel), 10)] = e.Version
	}
	return d.cfg.HostTags(), versions
}

func joinURL(base, p string) string {
	if base != "" && base[len(base)-1] != '/' {
		base += "/"
	}
	return base + p
}

// ErrStopped is what Poll returns when Run has returned.
var ErrStopped = errors.New("daemon: not running")

// Poll asks the running daemon to poll now and returns what that poll did.
func (d *Daemon) Poll(ctx context.Context) (PollResult, error) {
	ch := make(chan PollResult, 1)
	select {
	case d.pollNow <- ch:
	case <-d.stopped:
		return PollResult{}, ErrStopped
	case <-ctx.Done():
		return PollResult{}, ctx.Err()
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return PollResult{}, ctx.Err()
	}
}

// Run runs the loop until ctx ends. It assumes the last run crashed: the
// installer cleans up what it left, reverts the guard made while nothing
// ran are reported, and a trial still in its window gets a fresh window.
func (d *Daemon) Run(ctx context.Context) error {
	defer close(d.stopped)
	if err := d.open(); err != nil {
		return err
	}
	_ = atomicfile.Cleanup(filepath.Join(d.cfg.Root, StatusDir)) // a crashed run's temporary status file
	for _, w := range d.in.Warnings() {
		d.log.Warn("root", "warning", w)
	}
	d.observe("")
	d.startAgent()
	// The first poll comes soon after start (within 5 s, jittered: a fleet
	// that restarts at once does not poll in step), then every interval.
	pollC := d.clock.After(min(d.jitter(), 5*time.Second))
	flushC := d.clock.After(d.cfg.Telemetry.Interval.Duration)
	defer d.close()
	for {
		if d.restart {
			d.stopAgent()
			d.persist()
			return ErrRestart
		}
		var ready, exited <-chan struct{}
		if d.agent != nil {
			exited = d.agent.exited
			if !d.agentReady {
				ready = d.agent.ready
			}
		}
		select {
		case <-ctx.Done():
			d.stopAgent()
			d.persist()
			return nil
		case <-ready:
			d.onReady(ctx)
		case <-exited:
			d.onExit()
		case <-d.startTimeout:
			d.log.Error("the agent did not report its load in time; stopping it", "start_timeout", d.cfg.Agent.StartTimeout)
			d.startTimeout = nil
			_ = d.agent.cmd.Process.Kill() // onExit restarts it
		case <-d.restartC:
			d.restartC = nil
			d.startAgent()
		case <-d.healthC:
			d.healthC = nil
			d.onHealthWindow()
		case <-pollC:
			pollC = d.clock.After(d.cfg.PollInterval.Duration + d.jitter())
			d.tryPoll(ctx, nil)
		case reply := <-d.pollNow:
			d.tryPoll(ctx, reply)

		case <-flushC:
			flushC = d.clock.After(d.cfg.Telemetry.Interval.Duration)
			d.heartbeat()
			d.flush(ctx)
		}
	}
}

func (d *Daemon) jitter() time.Duration {
	j := d.cfg.PollJitter.Duration
	if j <= 0 {
		return 0
	}
	return time.Duration(d.rand.Int64N(int64(j)))
}

// starting reports whether the agent is loading (the root is its).
func (d *Daemon) starting() bool { return d.agent != nil && !d.agentReady }

func (d *Daemon) tryPoll(ctx context.Context, reply chan<- PollResult) {
	if d.starting() {
		d.pollDeferred = true
		if reply != nil {
			reply <- PollResult{Action: "deferred", Why: "the agent is loading"}
		}
		return
	}
	r := d.poll(ctx)
	if reply != nil {
		reply <- r
	}
}

// open opens the root if the daemon does not hold it.
func (d *Daemon) open() error {
	if d.in != nil {
		return nil
	}
	in, err := installer.Open(d.cfg.Root, installer.Options{
		Capabilities: d.opts.Capabilities,
		Policy:       bootguard.Policy{Tries: d.cfg.Tries, LoadTries: d.cfg.LoadTries},
		Clock:        d.clock,
		// The daemon acts on the root unattended: it refuses a root others
		// can write (the offline tools only warn, to allow repairs).
		StrictPerms: true,
	})
	if err != nil {
		return fmt.Errorf("daemon: open the root: %w", err)
	}
	d.in = in
	d.persist()
	return nil
}

// close releases the root (before the agent starts).
func (d *Daemon) close() {
	if d.in == nil {
		return
	}
	d.persist()
	if err := d.in.Close(); err != nil {
		d.log.Warn("close state.db", "err", err)
	}
	d.in = nil
}

// startAgent releases the root and starts the agent.
func (d *Daemon) startAgent() {
	d.close()
	d.agentReady, d.stopping = false, false
	a, err := startAgent(d.opts.AgentCommand, d.cfg.Root, func(stream, line string) {
		d.log.Debug(line, "from", stream)
	})
	if err != nil {
		d.log.Error("agent", "err", err)
		d.agent = nil
		d.restartC = d.clock.After(d.nextRestartDelay())
		_ = d.open()
		return
	}
	d.agent = a
	d.startTimeout = d.clock.After(d.cfg.Agent.StartTimeout.Duration)
	d.setStatus(func(s *Status) { s.Agent = "starting" })
}

// stopAgent stops the agent on purpose.
func (d *Daemon) stopAgent() {
	if d.agent == nil {
		return
	}
	d.stopping = true
	d.agent.stop(context.Background(), 10*time.Second)
	d.agent, d.agentReady, d.startTimeout, d.healthC = nil, false, nil, nil
}

func (d *Daemon) restartAgent() {
	d.stopAgent()
	d.startAgent()
}

func (d *Daemon) nextRestartDelay() time.Duration {
	delay := d.restartDelay
	d.restartDelay = min(2*d.restartDelay, time.Minute)
	return delay
}

// onReady: the agent's load finished. The daemon takes the root back,
// reports what the loader decided, and starts the health window of a trial.
func (d *Daemon) onReady(ctx context.Context) {
	d.agentReady, d.startTimeout = true, nil
	d.restartDelay = d.cfg.Agent.RestartDelay.Duration
	if !d.readyOnce {
		d.readyOnce = true
		if d.opts.OnReady != nil {
			d.opts.OnReady()
		}
	}
	if err := d.open(); err != nil {
		d.log.Error("after the agent's load", "err", err)
		return
	}
	d.observe("")
	rec, err := bootguard.Read(d.in.RecordPath())
	if err == nil && rec.Active != bootguard.SlotNone {
		e := *rec.Entry(rec.Active)
		if e.State == bootguard.StateTrial {
			d.trial = &trialInfo{channel: e.Channel, version: e.Version, slot: rec.Active}
			d.healthC = d.clock.After(d.cfg.HealthWindow.Duration)
			d.event(wire.Event{Kind: wire.EventTrialStarted, Channel: e.Channel, Version: e.Version,
				Evidence: map[string]string{"tries_left": fmt.Sprint(e.Tries), "health_window": d.cfg.HealthWindow.String()}})
			d.log.Info("trial started", "channel", e.Channel, "version", e.Version, "health_window", d.cfg.HealthWindow)
		}
		// The status goes out after the health timer is set: a watcher
		// that sees the trial running may advance the clock at once.
		d.setStatus(func(s *Status) {
			s.Agent, s.Running = "running", fmt.Sprintf("channel %d version %d (%v)", e.Channel, e.Version, e.State)
		})
	} else {
		d.setStatus(func(s *Status) { s.Agent, s.Running = "running", "no content" })
	}
	d.persist()
	if d.pollDeferred {
		d.pollDeferred = false
		d.poll(ctx)
	}
}

// onExit: the agent died (or was stopped). A crash is reported with the
// agent's last words; the guard decides at its next start what it loads.
func (d *Daemon) onExit() {
	a := d.agent
	d.agent, d.healthC, d.startTimeout = nil, nil, nil
	if d.stopping {
		return
	}
	wasReady := d.agentReady
	d.agentReady = false
	ev := wire.Event{Kind: wire.EventSensorCrashed, Reason: fmt.Sprint(a.err),
		Evidence: map[string]string{"stderr": a.evidence(), "during": map[bool]string{true: "run", false: "load"}[wasReady]}}
	if d.trial != nil {
		ev.Channel, ev.Version = d.trial.channel, d.trial.version
	}
	d.event(ev)
	delay := d.nextRestartDelay()
	d.log.Error("the agent died; the boot guard decides what it loads next", "err", a.err, "restart_in", delay, "stderr", a.evidence())
	d.restartC = d.clock.After(delay)
	d.setStatus(func(s *Status) { s.Agent = "restarting"; s.LastCrash = a.evidence() })
}

// onHealthWindow: the trial ran its window; it becomes last-known-good if
// it is still the active trial.
func (d *Daemon) onHealthWindow() {
	t := d.trial
	if t == nil || !d.agentReady || d.open() != nil {
		return
	}
	rec, err := bootguard.Read(d.in.RecordPath())
	if err != nil || rec.Active != t.slot {
		return
	}
	e := rec.Entry(rec.Active)
	if e.State != bootguard.StateTrial || e.Version != t.version {
		return
	}
	if _, err := d.in.MarkGood(); err != nil {
		d.log.Error("mark good", "err", err)
		return
	}
	d.trial = nil
	d.event(wire.Event{Kind: wire.EventHealthy, Channel: t.channel, Version: t.version})
	d.log.Info("trial passed its health window: new last-known-good", "channel", t.channel, "version", t.version)
	d.setStatus(func(s *Status) { s.Running = fmt.Sprintf("channel %d version %d (GOOD)", t.channel, t.version) })
	d.persist()
}

// observe reports reverts in the boot record not reported yet: the guard
// made them alone (a crash while loading, tries used up) or an admin did
// offline. Event ids are derived from the record, so a restarted daemon that
// reports one again is deduplicated upstream.
func (d *Daemon) observe(evidence string) {
	rec, err := bootguard.Read(d.in.RecordPath())
	if err != nil {
		return
	}
	for _, s := range []bootguard.Slot{bootguard.SlotA, bootguard.SlotB} {
		e := rec.Entry(s)
		if e.State != bootguard.StateBad {
			continue
		}
		id := fmt.Sprintf("reverted-%d-%d-%v", e.Channel, e.Version, e.Reason)
		if d.reported[id] {
			continue
		}
		d.reported[id] = true
		typ := wire.EventReverted
		if e.Reason == bootguard.ReasonRecovered {
			typ = wire.EventRecoveredOffline
		}
		ev := wire.Event{ID: id, Kind: typ, Channel: e.Channel, Version: e.Version, Reason: e.Reason.String(), Critical: true,
			Evidence: map[string]string{"running": describeActive(rec)}}
		if evidence != "" {
			ev.Evidence["stderr"] = evidence
		}
		d.event(ev)
		d.event(wire.Event{ID: "quarantined-" + id, Kind: wire.EventQuarantined, Channel: e.Channel, Version: e.Version, Reason: e.Reason.String(), Critical: true})
		msg := "content reverted by the boot guard and quarantined"
		if e.Reason == bootguard.ReasonManual {
			msg = "content reverted on request (a version the rollout plan denies, or an admin) and quarantined"
		}
		d.log.Warn(msg, "channel", e.Channel, "version", e.Version, "reason", e.Reason, "running", describeActive(rec))
		if d.trial != nil && d.trial.version == e.Version {
			d.trial = nil
		}
	}
}

func describeActive(rec bootguard.Record) string {
	if rec.Active == bootguard.SlotNone {
		return "no content"
	}
	e := rec.Entry(rec.Active)
	return fmt.Sprintf("channel %d version %d (%v)", e.Channel, e.Version, e.State)
}

// event queues ev (stamped and given an id when it has none).
func (d *Daemon) event(ev wire.Event) {
	if ev.Time.IsZero() {
		ev.Time = d.clock.Now().UTC()
	}
	d.queue = append(d.queue, ev)
}

// persist moves queued events into the outbox when the root is held.
func (d *Daemon) persist() {
	if d.in == nil || d.in.State() == nil {
		return
	}
	for len(d.queue) > 0 {
		ev, err := d.in.State().Enqueue(d.queue[0])
		if err != nil {
			d.log.Warn("telemetry outbox", "err", err)
			return
		}
		d.queue = d.queue[1:]
		if ev.Seq == 0 {
			continue // queued before (a deterministic id)
		}
		if err := journal(d.cfg.Root, ev); err != nil {
			d.log.Warn("event journal", "err", err)
		}
	}
}

func (d *Daemon) heartbeat() {
	ev := wire.Event{Kind: wire.EventHeartbeat}
	if d.in != nil {
		if rec, err := bootguard.Read(d.in.RecordPath()); err == nil && rec.Active != bootguard.SlotNone {
			e := rec.Entry(rec.Active)
			ev.Channel, ev.Version = e.Channel, e.Version
			ev.Evidence = map[string]string{"state": e.State.String()}
		}
	}
	d.event(ev)
}

func (d *Daemon) flush(ctx context.Context) {
	if d.starting() || d.open() != nil {
		return
	}
	d.persist()
	if d.opts.Sender == nil || d.in.State() == nil || !d.opts.Sender.Due(d.clock.Now()) {
		return
	}
	n, err := d.opts.Sender.Flush(ctx, d.in.State())
	outcome := "sent"
	if err != nil {
		outcome = fmt.Sprintf("not sent, kept in the outbox: %v", err)
		d.log.Warn("telemetry not sent; kept in the outbox", "err", err, "sent", n)
	} else if n > 0 {
		d.log.Debug("telemetry sent", "events", n)
	}
	if adm := d.opts.Sender.Admission(); adm != d.status.Admission || outcome != d.status.Telemetry {
		d.setStatus(func(s *Status) { s.Admission, s.Telemetry = adm, outcome })
	}
}

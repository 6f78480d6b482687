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
//
// The loop (daemon.go) wires five concerns, one file each: the agent's
// supervision (supervise.go), the trial in its health window (trial.go),
// polling and installing (poll.go), the telemetry on its way out
// (outbox.go), and the agent's health that every batch carries
// (health.go: its counters from its health lines, its CPU and memory read
// from outside, usage_*.go), which metrics.go also serves on an optional
// local /metrics. What the daemon last did is its status file (status.go).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"time"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/tuf"
	"github.com/ringfence/ringfence/validator"
)

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
	// Clock is the daemon's time: its timers (poll, telemetry, start
	// timeout, restart backoff, health window), its events' stamps, and
	// the TUF client's expiry checks; nil means clock.System.
	Clock clock.Clock
	// Rand draws the poll jitter; nil means a random seed.
	Rand *rand.Rand
	// Binary, when set, updates ringfenced itself.
	Binary *BinaryUpdate
	// OnReady, when set, is called once, the first time the agent reports
	// its load: the daemon is up (selfupdate.Confirm goes here).
	OnReady func()
	// Observe, when set, is called with every new status (tests watch the
	// loop through it). It runs on the loop's goroutine: it must not block.
	Observe func(Status)
	// ObserveHealth, when set, is called with the counters of every health
	// line the agent prints (tests wait for the agent's readings through
	// it). It runs on the goroutine that reads the agent's output: it must
	// not block.
	ObserveHealth func(sensor.Meter)
}

// Daemon is the update loop for one root. Run's goroutine owns all of it;
// Poll reaches it through a channel.
type Daemon struct {
	cfg      hostconfig.Config
	caps     *validator.Capabilities
	log      *slog.Logger
	clock    clock.Clock
	onStatus func(Status) // Options.Observe

	in *installer.Installer // the root: open except while the agent starts

	sup    supervisor
	trial  trial
	poller poller
	out    outbox
	health health

	status  Status
	restart bool                   // a new ringfenced binary is in place: Run returns ErrRestart
	pollNow chan chan<- PollResult // on-demand polls
	stopped chan struct{}          // closed when Run returns
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
	for _, ch := range opts.Config.Followed() {
		if !opts.Capabilities.LoadsChannel(ch) {
			return nil, fmt.Errorf("daemon: configuration: channels: the agent (sensor %s) loads channels %v by its capability manifest; %d is not one of them", opts.Capabilities.Sensor, opts.Capabilities.Channels, ch)
		}
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = clock.System{}
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
		cfg: opts.Config, caps: opts.Capabilities, log: opts.Log, clock: opts.Clock, onStatus: opts.Observe,
		status:  Status{HostID: opts.HostID, Channels: opts.Config.Followed()},
		pollNow: make(chan chan<- PollResult), stopped: make(chan struct{}),
	}
	// The concerns share the daemon's configuration, clock and log; each
	// holds the rest of what it uses, and the outbox that takes its events.
	d.out = outbox{cfg: &d.cfg, caps: opts.Capabilities, sender: opts.Sender, clock: opts.Clock, log: opts.Log, reported: map[string]bool{}, health: &d.health}
	d.sup = supervisor{cfg: &d.cfg, command: opts.AgentCommand, onReady: opts.OnReady, onHealth: opts.ObserveHealth, clock: opts.Clock, log: opts.Log,
		restartDelay: opts.Config.Agent.RestartDelay.Duration}
	d.trial = trial{cfg: &d.cfg, clock: opts.Clock, log: opts.Log, out: &d.out}
	d.poller = poller{cfg: &d.cfg, hostID: opts.HostID, caps: opts.Capabilities, preflight: opts.PreflightCommand,
		binary: opts.Binary, client: client, rand: opts.Rand, log: opts.Log, out: &d.out, rejected: map[[2]uint32]string{}, binRefused: map[string]string{}}
	if opts.Sender != nil {
		opts.Sender.SetInfo(d.out.info)
	}
	return d, nil
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
	d.observe()
	if addr, stop := d.serveMetrics(); addr != "" {
		defer stop()
		d.setStatus(func(s *Status) { s.Metrics = addr })
	}
	d.startAgent()
	// The first poll comes soon after start (within 5 s, jittered: a fleet
	// that restarts at once does not poll in step), then every interval.
	pollC := d.clock.After(min(d.poller.jitter(), 5*time.Second))
	flushC := d.clock.After(d.cfg.Telemetry.Interval.Duration)
	defer d.close()
	for {
		if d.restart {
			d.stopAgent()
			d.out.persist(d.in)
			return ErrRestart
		}
		ready, exited := d.sup.waiting()
		select {
		case <-ctx.Done():
			d.stopAgent()
			d.out.persist(d.in)
			return nil
		case <-ready:
			d.onReady(ctx)
		case <-exited:
			d.onExit()
		case <-d.sup.startTimeout:
			d.sup.timedOut() // onExit restarts it
		case <-d.sup.restartC:
			d.sup.restartC = nil
			d.startAgent()
		case <-d.trial.healthC:
			d.trial.healthC = nil
			// A version staged while this trial ran goes on trial now,
			// not a poll interval later.
			if d.onHealthWindow() && d.poller.staged {
				d.tryPoll(ctx, nil)
			}
		case <-pollC:
			pollC = d.clock.After(d.cfg.PollInterval.Duration + d.poller.jitter())
			d.tryPoll(ctx, nil)
		case reply := <-d.pollNow:
			d.tryPoll(ctx, reply)
		case <-flushC:
			flushC = d.clock.After(d.cfg.Telemetry.Interval.Duration)
			d.health.sample(d.clock.Now())
			d.out.heartbeat(d.in)
			d.flush(ctx)
		}
	}
}

// onReady: the agent's load finished. The daemon takes the root back,
// reports what the loader decided, and starts the health window of a trial.
func (d *Daemon) onReady(ctx context.Context) {
	d.sup.loaded()
	// The agent runs what it has just loaded until it stops: its health
	// is measured on that content from now.
	d.health.begin(d.sup.agent, d.out.versions(), d.clock.Now())
	if err := d.open(); err != nil {
		d.log.Error("after the agent's load", "err", err)
		return
	}
	d.observe()
	// One trial at a time: the first channel in its trial is the one (a
	// root set up by hand with several gets their windows one by one).
	for _, ch := range d.cfg.Followed() {
		rec := readBoot(installer.RecordPathOf(d.cfg.Root, ch))
		if e, ok := activeEntry(rec); ok && e.State == bootguard.StateTrial {
			d.trial.begin(rec.Active, e)
			break
		}
	}
	// The status goes out after the health timer is set: a watcher that
	// sees the trial running may advance the clock at once.
	d.setStatus(func(s *Status) { s.Agent, s.Running = AgentRunning, d.describeRunning() })
	d.out.persist(d.in)
	// A poll that came during the load runs now; so does one for a version
	// staged behind a trial that has ended (reverted at this load).
	if d.poller.deferred || (d.poller.staged && d.trial.info == nil) {
		d.poller.deferred = false
		d.poll(ctx)
	}
}

// open opens the root if the daemon does not hold it.
func (d *Daemon) open() error {
	if d.in != nil {
		return nil
	}
	in, err := installer.Open(d.cfg.Root, installer.Options{
		Capabilities: d.caps,
		Channels:     d.cfg.Followed(),
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
	d.out.persist(d.in)
	return nil
}

// close releases the root (before the agent starts).
func (d *Daemon) close() {
	if d.in == nil {
		return
	}
	d.out.persist(d.in)
	if err := d.in.Close(); err != nil {
		d.log.Warn("close state.db", "err", err)
	}
	d.in = nil
}

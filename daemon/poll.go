package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/compat"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/hostdb"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/tuf"
	"github.com/ringfence/ringfence/validator"
	"github.com/ringfence/ringfence/wire"
)

// Action is what one poll did. It is a word of the status file (Status.Poll)
// and of the log, which `ringfence status` and people read; its strings
// stay as they are.
type Action string

// The actions of a poll.
const (
	ActionNothing     Action = "nothing"      // the host runs what it should, or nothing is for it
	ActionInstalled   Action = "installed"    // a version is staged and activated as a trial; the agent restarts to load it
	ActionReverted    Action = "reverted"     // the running version is denied by the plan: the host left it
	ActionRejected    Action = "rejected"     // validation or preflight refused the version (for this run)
	ActionSkipped     Action = "skipped"      // the version is quarantined here, or was rejected earlier
	ActionWaiting     Action = "waiting"      // a trial is in its health window
	ActionDeferred    Action = "deferred"     // the agent is loading: the poll runs after its load
	ActionFailed      Action = "failed"       // something failed; Why says what
	ActionSelfUpdated Action = "self-updated" // a new ringfenced binary is in place; the daemon restarts
)

// String returns the action's word.
func (a Action) String() string { return string(a) }

// PollResult says what one poll did. On a host that follows several
// channels, Channels holds what it did on each, and the rest is the result
// that weighs most (rank): an install before a revert before a failure ...
// before nothing.
type PollResult struct {
	Action   Action       `json:"action"`
	Channel  uint32       `json:"channel,omitempty"`
	Version  uint32       `json:"version,omitempty"`
	Why      string       `json:"why"`
	Channels []PollResult `json:"channels,omitempty"`
}

// rank orders actions by how much they say about a poll.
var rank = map[Action]int{ActionSelfUpdated: 9, ActionInstalled: 8, ActionReverted: 7, ActionFailed: 6, ActionRejected: 5,
	ActionSkipped: 4, ActionWaiting: 3, ActionDeferred: 2, ActionNothing: 1}

// combine makes one result of the channels' results.
func combine(rs []PollResult) PollResult {
	switch len(rs) {
	case 0:
		return PollResult{Action: ActionNothing, Why: "the host follows no channel"}
	case 1:
		return rs[0]
	}
	top := rs[0]
	for _, r := range rs[1:] {
		if rank[r.Action] > rank[top.Action] {
			top = r
		}
	}
	top.Channels = rs
	return top
}

// poller polls the repository and installs what this host should run: the
// version the pin or the signed rollout plan and the local policy give it,
// checked by the product's check (validator.Vet: validation, then
// preflight) before it is staged and activated as a trial. A version
// refused in this run is not tried again until the daemon restarts.
type poller struct {
	cfg       *hostconfig.Config // Followed, PinFor, Rings, NMinus1, tags, PollJitter, Root, Agent.PreflightTimeout
	hostID    string
	caps      *validator.Capabilities
	preflight []string      // Options.PreflightCommand
	binary    *BinaryUpdate // nil: ringfenced does not update itself
	client    *tuf.Client
	rand      *rand.Rand // the jitter
	log       *slog.Logger
	out       *outbox

	deferred   bool                 // a poll came while the agent loaded: it runs after the load
	staged     bool                 // the last poll staged a version that waits for another channel's trial
	rejected   map[[2]uint32]string // {channel, version}s refused this run, and why
	binRefused map[string]string    // ringfenced binary versions Apply refused this run, and why
}

// jitter is a random wait in [0, poll_jitter): a fleet does not poll in
// step.
func (p *poller) jitter() time.Duration {
	j := p.cfg.PollJitter.Duration
	if j <= 0 {
		return 0
	}
	return time.Duration(p.rand.Int64N(int64(j)))
}

// tryPoll polls now, or, while the agent loads (the root is its), once it
// has loaded.
func (d *Daemon) tryPoll(ctx context.Context, reply chan<- PollResult) {
	if d.sup.starting() {
		d.poller.deferred = true
		if reply != nil {
			reply <- PollResult{Action: ActionDeferred, Why: "the agent is loading"}
		}
		return
	}
	r := d.poll(ctx)
	if reply != nil {
		reply <- r
	}
}

// poll runs one update cycle, acts on its outcome (a new trial or a revert
// restarts the agent; a new ringfenced binary stops the loop) and records
// it.
func (d *Daemon) poll(ctx context.Context) PollResult {
	r := d.update(ctx)
	lvl := d.log.Info
	if r.Action == ActionFailed || r.Action == ActionRejected {
		lvl = d.log.Warn
	}
	if r.Action != ActionNothing {
		lvl("poll", "action", r.Action, "version", r.Version, "why", r.Why)
	} else {
		d.log.Debug("poll", "action", r.Action, "why", r.Why)
	}
	d.setStatus(func(s *Status) { s.LastPoll, s.Poll = d.clock.Now().UTC(), r })
	d.out.persist(d.in)
	return r
}

// update takes the root and has the poller decide and install; then it
// acts on what the poller did.
func (d *Daemon) update(ctx context.Context) PollResult {
	if err := d.open(); err != nil {
		return PollResult{Action: ActionFailed, Why: err.Error()}
	}
	r := d.poller.update(ctx, d.in)
	switch r.Action {
	case ActionInstalled:
		d.restartAgent() // its loader loads the trial
	case ActionReverted:
		d.trial.end()
		d.observe()
		d.restartAgent()
	case ActionSelfUpdated:
		d.restart = true
	}
	return r
}

// update decides what this host should run and installs it through in:
// first ringfenced's own binary, then the content of each channel it
// follows, in ascending order. At most one channel goes on trial per poll:
// a host runs one trial at a time (docs/boot-record.md, "Several
// channels"), so a channel whose new version arrives during another's trial
// is staged and waits.
func (p *poller) update(ctx context.Context, in *installer.Installer) PollResult {
	if err := p.client.Refresh(ctx); err != nil {
		for _, ch := range p.cfg.Followed() {
			p.out.add(wire.Event{Kind: wire.EventFetchFailed, Channel: ch, Reason: tufReason(err), Evidence: map[string]string{"error": err.Error()}})
		}
		return PollResult{Action: ActionFailed, Why: "TUF refresh: " + err.Error()}
	}
	var rs []PollResult
	if r, ok := p.updateBinary(ctx); ok {
		if r.Action == ActionSelfUpdated {
			return r // the daemon restarts into the new binary; content waits for it
		}
		// A self-update that failed never holds content back: content is
		// what protects the host, and the binary may never fit here.
		rs = append(rs, r)
	}
	p.staged = false
	for _, ch := range p.cfg.Followed() {
		r := p.updateChannel(ctx, in, ch)
		r.Channel = ch
		rs = append(rs, r)
		if r.Action == ActionInstalled || r.Action == ActionReverted {
			break // the agent restarts; the other channels wait for the next poll
		}
	}
	return combine(rs)
}

// updateChannel decides and installs the content of channel ch.
func (p *poller) updateChannel(ctx context.Context, root *installer.Installer, ch uint32) PollResult {
	in, err := root.Channel(ch)
	if err != nil {
		return PollResult{Action: ActionFailed, Why: err.Error()}
	}
	want, plan, why, err := p.desired(ctx, ch)
	if err != nil {
		p.out.add(wire.Event{Kind: wire.EventFetchFailed, Channel: ch, Reason: tufReason(err), Evidence: map[string]string{"error": err.Error()}})
		return PollResult{Action: ActionFailed, Why: err.Error()}
	}
	rec, err := bootguard.Read(in.RecordPath())
	if err != nil {
		return PollResult{Action: ActionFailed, Why: fmt.Sprintf("boot record of channel %d: %v (run 'ringfence recover --channel %d')", ch, err, ch)}
	}
	active, _ := activeEntry(rec)
	// A version the plan denies (rolled back upstream) is left at once,
	// trial or already marked good: back to the other slot's good content,
	// or to no content when the plan gives nobody content (a first
	// rollout, rolled back). With no good content to go back to and a plan
	// that names another version, the host keeps running what it has
	// rather than nothing until that version installs, and says so.
	if plan != nil && active.Version != 0 && plan.Denied(active.Version) {
		if rec.Entry(rec.Active.Other()).State != bootguard.StateGood && !plan.NoContent() {
			return PollResult{Action: ActionFailed, Version: active.Version,
				Why: "the rollout plan denies the running version, and no good content is left to go back to; run 'ringfence recover' or publish a fix"}
		}
		if _, err := in.Revert(bootguard.ReasonManual); err != nil {
			return PollResult{Action: ActionFailed, Version: active.Version, Why: "revert a denied version: " + err.Error()}
		}
		return PollResult{Action: ActionReverted, Version: active.Version, Why: "the rollout plan denies it (rolled back upstream)"}
	}
	if active.State == bootguard.StateTrial {
		return PollResult{Action: ActionWaiting, Version: active.Version, Why: "a trial is in its health window"}
	}
	if want == 0 {
		return PollResult{Action: ActionNothing, Why: why}
	}
	if want == active.Version {
		return PollResult{Action: ActionNothing, Version: want, Why: "running the version the plan gives this host"}
	}
	if q, _ := in.Quarantined(); slices.ContainsFunc(q, func(x hostdb.Quarantine) bool { return x.Channel == ch && x.Version == want }) {
		return PollResult{Action: ActionSkipped, Version: want, Why: "quarantined on this host (it was reverted here)"}
	}
	if prev, ok := p.rejected[[2]uint32{ch, want}]; ok {
		return PollResult{Action: ActionSkipped, Version: want, Why: "rejected earlier: " + prev}
	}
	// The content role's constraint binds whatever gave this host the
	// version (a plan, a pin, N-1): content published for other sensors
	// is never downloaded here.
	if r, ok := p.checkCompat(ch, want); !ok {
		return r
	}
	// Staged earlier, while another channel was in its trial: activate it
	// now if that trial is over (Activate verifies the slot first).
	for _, s := range []bootguard.Slot{bootguard.SlotA, bootguard.SlotB} {
		if e := rec.Entry(s); e.State == bootguard.StateStaged && e.Channel == ch && e.Version == want {
			return p.activate(in, ch, want, s, nil)
		}
	}
	return p.install(ctx, in, ch, want)
}

// desired is the version this host should run: the pin, or the plan's
// version for the host's stage, adjusted by the ring policy and N-1.
func (p *poller) desired(ctx context.Context, ch uint32) (uint32, *rollout.Plan, string, error) {
	published := p.published(ch)
	var plan *rollout.Plan
	if name := rollout.RolloutTarget(ch); p.client.Targets("rollout")[name] != nil {
		fetched, err := p.fetchPlan(ctx, name, ch)
		if err != nil {
			return 0, nil, "", err
		}
		plan = fetched
	}
	if pin := p.cfg.PinFor(ch); pin != 0 {
		if !slices.Contains(published, pin) {
			return 0, plan, fmt.Sprintf("pinned to version %d, which is not published", pin), nil
		}
		return pin, plan, "pinned", nil
	}
	if plan == nil {
		return 0, nil, "no rollout plan for channel " + fmt.Sprint(ch), nil
	}
	if plan.NoContent() {
		return 0, plan, "the plan gives no host content on this channel (a first rollout, rolled back)", nil
	}
	host := rollout.Host{ID: p.hostID, Tags: p.cfg.HostTags(), Sensor: p.caps.Sensor}
	last := plan.Stages[len(plan.Stages)-1]
	var v uint32
	switch {
	case p.cfg.Rings == hostconfig.RingsLate:
		if !last.Contains(host) {
			return 0, plan, "refusing early rings; not in the last stage yet", nil
		}
		v = last.Version
	default:
		i := plan.StageFor(host)
		if i < 0 {
			return 0, plan, "in no stage of the plan yet", nil
		}
		v = plan.Stages[i].Version
	}
	if p.cfg.NMinus1 {
		v = 0
		for _, pv := range published {
			if pv < last.Version && pv > v && !plan.Denied(pv) {
				v = pv
			}
		}
		if v == 0 {
			return 0, plan, "N-1: no published version below the fleet's", nil
		}
	}
	if plan.Denied(v) {
		return 0, plan, fmt.Sprintf("version %d is denied by the plan", v), nil
	}
	return v, plan, "the plan's version for this host", nil
}

// published lists channel ch's content versions the repository signs.
func (p *poller) published(ch uint32) []uint32 {
	var out []uint32
	for name := range p.client.Targets("content") {
		if c, v, ok := rollout.ParseContentTarget(name); ok && c == ch {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

func (p *poller) fetchPlan(ctx context.Context, name string, ch uint32) (*rollout.Plan, error) {
	data, err := p.download(ctx, name, rollout.MaxSize)
	if err != nil {
		return nil, fmt.Errorf("rollout plan: %w", err)
	}
	plan, err := rollout.Parse(data)
	if err != nil {
		return nil, err
	}
	if plan.Channel != ch {
		return nil, fmt.Errorf("rollout plan %s is for channel %d", name, plan.Channel)
	}
	return plan, nil
}

// download fetches and verifies a target through TUF and reads it, bounded.
func (p *poller) download(ctx context.Context, name string, limit int64) ([]byte, error) {
	path, err := p.client.Download(ctx, name)
	if err != nil {
		return nil, err
	}
	defer os.Remove(path)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return b, nil
}

// install takes version v of channel ch through download, the product's
// check (validation, preflight), stage and activation; the agent then
// restarts so the loader loads the trial. While another channel is in its
// trial, v is staged and waits (ActionWaiting).
func (p *poller) install(ctx context.Context, in *installer.Installer, ch, v uint32) PollResult {
	name := rollout.ContentTarget(ch, v)
	data, err := p.download(ctx, name, validator.MaxFileSize)
	if err != nil {
		p.out.add(wire.Event{Kind: wire.EventFetchFailed, Channel: ch, Version: v, Reason: tufReason(err), Evidence: map[string]string{"error": err.Error()}})
		return PollResult{Action: ActionFailed, Version: v, Why: "download: " + err.Error()}
	}
	verdict, err := p.vet(ctx, in, data)
	if err != nil {
		return PollResult{Action: ActionFailed, Version: v, Why: "preflight could not run: " + err.Error()}
	}
	if !verdict.Accepted() {
		return p.reject(ch, v, verdict)
	}
	// Only the installer's Check hands out the Content that Stage takes. It
	// repeats Vet's static checks, so it refuses nothing Vet accepted unless
	// the boot record changed in between; the next poll vets again.
	c, err := in.Check(data)
	if err != nil {
		return PollResult{Action: ActionFailed, Version: v, Why: err.Error()}
	}
	if c.Channel() != ch {
		return PollResult{Action: ActionFailed, Version: v, Why: fmt.Sprintf("%s is a file of channel %d", name, c.Channel())}
	}
	staged, _, err := in.StageActivate(c, installer.StageOptions{})
	if err != nil && !errors.Is(err, installer.ErrTrialRunning) {
		return PollResult{Action: ActionFailed, Version: v, Why: "stage: " + err.Error()}
	}
	return p.activated(in, ch, v, staged.Slot, verdict.Codes(), err)
}

// activate puts staged version v of channel ch on trial, unless another
// channel is in its trial: then it waits, staged, for a later poll.
func (p *poller) activate(in *installer.Installer, ch, v uint32, slot bootguard.Slot, codes []string) PollResult {
	_, err := in.Activate(slot)
	if err != nil && !errors.Is(err, installer.ErrTrialRunning) {
		return PollResult{Action: ActionFailed, Version: v, Why: "activate: " + err.Error()}
	}
	return p.activated(in, ch, v, slot, codes, err)
}

// activated reports what activating version v in slot came to: installed
// as a trial, or (err ErrTrialRunning) staged and waiting.
func (p *poller) activated(in *installer.Installer, ch, v uint32, slot bootguard.Slot, codes []string, err error) PollResult {
	if errors.Is(err, installer.ErrTrialRunning) {
		p.staged = true
		return PollResult{Action: ActionWaiting, Version: v, Why: fmt.Sprintf("staged in slot %v; waits for channel %d's trial to end (one trial at a time)", slot, in.TrialRunning())}
	}
	p.out.add(wire.Event{Kind: wire.EventInstalled, Channel: ch, Version: v, Codes: codes,
		Evidence: map[string]string{"slot": slot.String()}})
	p.log.Info("content installed as a trial; restarting the agent to load it", "channel", ch, "version", v, "slot", slot)
	return PollResult{Action: ActionInstalled, Version: v, Why: "staged and activated as a trial"}
}

// checkCompat reports whether version v of channel ch may run on the
// installed sensor by the compatibility constraint signed with it (package
// compat). When it may not, or the constraint cannot be read, it refuses
// the version for this run, reports it as incompatible (an event the gate
// does not count against the content) and returns what to say.
func (p *poller) checkCompat(ch, v uint32) (PollResult, bool) {
	c, err := compat.Parse(p.client.Custom("content", rollout.ContentTarget(ch, v)))
	var why string
	switch {
	case err != nil:
		why = fmt.Sprintf("version %d: its compatibility constraint cannot be read (%v); refusing it", v, err)
	case c.Allows(p.caps.Sensor):
		return PollResult{}, true
	default:
		why = fmt.Sprintf("version %d is published for %v; the installed sensor is %s", v, compat.Constraint{Sensors: c.Sensors}, p.caps.Sensor)
	}
	p.rejected[[2]uint32{ch, v}] = why
	p.out.add(wire.Event{Kind: wire.EventIncompatible, Channel: ch, Version: v, Reason: why,
		Evidence: map[string]string{"sensor": p.caps.Sensor, "constraint": c.String()}})
	return PollResult{Action: ActionRejected, Version: v, Why: why}, false
}

// reject refuses version v of channel ch for this run, as the check the
// verdict names did, and reports it.
func (p *poller) reject(ch, v uint32, verdict validator.Verdict) PollResult {
	kind := wire.EventRejectedValidation
	if verdict.RefusedBy == validator.StagePreflight {
		kind = wire.EventRejectedPreflight
	}
	why := verdict.Err().Error()
	p.rejected[[2]uint32{ch, v}] = why
	p.out.add(wire.Event{Kind: kind, Channel: ch, Version: v, Reason: why, Codes: verdict.Codes()})
	return PollResult{Action: ActionRejected, Version: v, Why: why}
}

// vet runs the product's check on data: validation against the installed
// interpreter and the active content (a file of its channel must be
// newer), then preflight in a child process, on a copy in downloads/.
func (p *poller) vet(ctx context.Context, in *installer.Installer, data []byte) (validator.Verdict, error) {
	opts := validator.VetOptions{
		Preflight: &validator.PreflightOptions{
			Command: p.preflight,
			Timeout: p.cfg.Agent.PreflightTimeout.Duration,
		},
		TempDir: filepath.Join(p.cfg.Root, "downloads"),
	}
	if e, ok := activeEntry(readBoot(in.RecordPath())); ok {
		opts.Installed = &validator.Installed{Channel: e.Channel, ContentVersion: e.Version}
	}
	return validator.Vet(ctx, data, p.caps, opts)
}

// tufReason names a TUF failure by its sentinel, for telemetry.
func tufReason(err error) string {
	for _, s := range []struct {
		err  error
		name string
	}{
		{tuf.ErrExpired, "expired"}, {tuf.ErrRollback, "rollback"}, {tuf.ErrBadSignature, "bad-signature"},
		{tuf.ErrMismatch, "mismatch"}, {tuf.ErrNotFound, "not-found"}, {tuf.ErrTooLarge, "too-large"},
		{tuf.ErrNetwork, "network"}, {tuf.ErrBadTarget, "bad-target"}, {tuf.ErrInvalid, "invalid"},
	} {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return strings.SplitN(err.Error(), ":", 2)[0]
}

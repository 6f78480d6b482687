package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/hostdb"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/tuf"
	"github.com/ringfence/ringfence/validator"
	"github.com/ringfence/ringfence/wire"
)

// PollResult says what one poll did.
type PollResult struct {
	// Action is one of: nothing, installed, reverted, rejected, skipped,
	// waiting, deferred, failed.
	Action  string `json:"action"`
	Version uint32 `json:"version,omitempty"`
	Why     string `json:"why"`
}

// Status is what the daemon last did, written to <root>/daemon/status.json
// for `ringfence status` and people. It lives in its own directory: the
// agent's loader cleans the root's temporary files while the daemon may be
// writing this one.
type Status struct {
	HostID    string     `json:"host_id"`
	Channel   uint32     `json:"channel"`
	Agent     string     `json:"agent"`
	Running   string     `json:"running"`
	LastPoll  time.Time  `json:"last_poll"`
	Poll      PollResult `json:"poll"`
	LastCrash string     `json:"last_crash,omitempty"`
	// Admission is the host's standing with the rollout server, as its
	// last answer said (pending: an operator has not admitted the host
	// yet, and nothing it reports counts); Telemetry is the last send's
	// outcome ("sent", or why not).
	Admission wire.Admission `json:"admission,omitempty"`
	Telemetry string         `json:"telemetry,omitempty"`
}

// StatusDir and StatusName place the daemon's status file in the root.
const (
	StatusDir  = "daemon"
	StatusName = "status.json"
)

// maxStatusFile bounds the status file ReadStatus reads.
const maxStatusFile = 1 << 20

// ReadStatus reads the status a daemon last wrote under root.
func ReadStatus(root string) (Status, error) {
	var st Status
	b, err := boundedio.ReadFile(filepath.Join(root, StatusDir, StatusName), maxStatusFile)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

func (d *Daemon) setStatus(f func(*Status)) {
	d.status.HostID, d.status.Channel = d.opts.HostID, d.cfg.Channel
	f(&d.status)
	if d.opts.Observe != nil {
		d.opts.Observe(d.status)
	}
	b, err := json.MarshalIndent(d.status, "", "  ")
	if err != nil {
		return
	}
	dir := filepath.Join(d.cfg.Root, StatusDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		d.log.Warn("status directory", "err", err)
		return
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, StatusName), append(b, '\n'), 0o644); err != nil {
		d.log.Warn("write the status file", "err", err)
	}
}

// poll runs one update cycle and records its outcome.
func (d *Daemon) poll(ctx context.Context) PollResult {
	r := d.update(ctx)
	lvl := d.log.Info
	if r.Action == "failed" || r.Action == "rejected" {
		lvl = d.log.Warn
	}
	if r.Action != "nothing" {
		lvl("poll", "action", r.Action, "version", r.Version, "why", r.Why)
	} else {
		d.log.Debug("poll", "action", r.Action, "why", r.Why)
	}
	d.setStatus(func(s *Status) { s.LastPoll, s.Poll = d.clock.Now().UTC(), r })
	d.persist()
	return r
}

func (d *Daemon) update(ctx context.Context) PollResult {
	if err := d.open(); err != nil {
		return PollResult{Action: "failed", Why: err.Error()}
	}
	ch := d.cfg.Channel
	if err := d.client.Refresh(ctx); err != nil {
		d.event(wire.Event{Kind: wire.EventFetchFailed, Channel: ch, Reason: tufReason(err), Evidence: map[string]string{"error": err.Error()}})
		return PollResult{Action: "failed", Why: "TUF refresh: " + err.Error()}
	}
	if r, ok := d.updateBinary(ctx); ok {
		return r
	}
	want, plan, why, err := d.desired(ctx)
	if err != nil {
		d.event(wire.Event{Kind: wire.EventFetchFailed, Channel: ch, Reason: tufReason(err), Evidence: map[string]string{"error": err.Error()}})
		return PollResult{Action: "failed", Why: err.Error()}
	}
	rec, err := bootguard.Read(d.in.RecordPath())
	if err != nil {
		return PollResult{Action: "failed", Why: fmt.Sprintf("boot record: %v (run 'ringfence recover')", err)}
	}
	var active bootguard.Entry
	if rec.Active != bootguard.SlotNone {
		active = *rec.Entry(rec.Active)
	}
	// A version the plan denies (rolled back upstream) is left at once,
	// trial or already marked good: back to the other slot's good content,
	// or to no content when the plan gives nobody content (a first
	// rollout, rolled back). With no good content to go back to and a plan
	// that names another version, the host keeps running what it has
	// rather than nothing until that version installs, and says so.
	if plan != nil && active.Version != 0 && plan.Denied(active.Version) {
		if rec.Entry(rec.Active.Other()).State != bootguard.StateGood && !plan.NoContent() {
			return PollResult{Action: "failed", Version: active.Version,
				Why: "the rollout plan denies the running version, and no good content is left to go back to; run 'ringfence recover' or publish a fix"}
		}
		if _, err := d.in.Revert(bootguard.ReasonManual); err != nil {
			return PollResult{Action: "failed", Version: active.Version, Why: "revert a denied version: " + err.Error()}
		}
		d.trial = nil
		d.observe("")
		d.restartAgent()
		return PollResult{Action: "reverted", Version: active.Version, Why: "the rollout plan denies it (rolled back upstream)"}
	}
	if active.State == bootguard.StateTrial {
		return PollResult{Action: "waiting", Version: active.Version, Why: "a trial is in its health window"}
	}
	if want == 0 {
		return PollResult{Action: "nothing", Why: why}
	}
	if want == active.Version {
		return PollResult{Action: "nothing", Version: want, Why: "running the version the plan gives this host"}
	}
	if q, _ := d.in.Quarantined(); slices.ContainsFunc(q, func(x hostdb.Quarantine) bool { return x.Channel == ch && x.Version == want }) {
		return PollResult{Action: "skipped", Version: want, Why: "quarantined on this host (it was reverted here)"}
	}
	if prev, ok := d.rejected[want]; ok {
		return PollResult{Action: "skipped", Version: want, Why: "rejected earlier: " + prev}
	}
	return d.install(ctx, want)
}

// desired is the version this host should run: the pin, or the plan's
// version for the host's stage, adjusted by the ring policy and N-1.
func (d *Daemon) desired(ctx context.Context) (uint32, *rollout.Plan, string, error) {
	ch := d.cfg.Channel
	published := d.published()
	var plan *rollout.Plan
	if name := rollout.RolloutTarget(ch); d.client.Targets("rollout")[name] != nil {
		p, err := d.fetchPlan(ctx, name)
		if err != nil {
			return 0, nil, "", err
		}
		plan = p
	}
	if d.cfg.Pin != 0 {
		if !slices.Contains(published, d.cfg.Pin) {
			return 0, plan, fmt.Sprintf("pinned to version %d, which is not published", d.cfg.Pin), nil
		}
		return d.cfg.Pin, plan, "pinned", nil
	}
	if plan == nil {
		return 0, nil, "no rollout plan for channel " + fmt.Sprint(ch), nil
	}
	if plan.NoContent() {
		return 0, plan, "the plan gives no host content on this channel (a first rollout, rolled back)", nil
	}
	host := rollout.Host{ID: d.opts.HostID, Tags: d.cfg.HostTags()}
	last := plan.Stages[len(plan.Stages)-1]
	var v uint32
	switch {
	case d.cfg.Rings == hostconfig.RingsLate:
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
	if d.cfg.NMinus1 {
		v = 0
		for _, p := range published {
			if p < last.Version && p > v && !plan.Denied(p) {
				v = p
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

// published lists the channel's content versions the repository signs.
func (d *Daemon) published() []uint32 {
	var out []uint32
	for name := range d.client.Targets("content") {
		if c, v, ok := rollout.ParseContentTarget(name); ok && c == d.cfg.Channel {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

func (d *Daemon) fetchPlan(ctx context.Context, name string) (*rollout.Plan, error) {
	data, err := d.download(ctx, name, rollout.MaxSize)
	if err != nil {
		return nil, fmt.Errorf("rollout plan: %w", err)
	}
	p, err := rollout.Parse(data)
	if err != nil {
		return nil, err
	}
	if p.Channel != d.cfg.Channel {
		return nil, fmt.Errorf("rollout plan %s is for channel %d", name, p.Channel)
	}
	return p, nil
}

// download fetches and verifies a target through TUF and reads it, bounded.
func (d *Daemon) download(ctx context.Context, name string, limit int64) ([]byte, error) {
	path, err := d.client.Download(ctx, name)
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

// install takes version v through download, the product's check (validation,
// preflight), stage and activation, then restarts the agent so the loader
// loads the trial.
func (d *Daemon) install(ctx context.Context, v uint32) PollResult {
	ch := d.cfg.Channel
	name := rollout.ContentTarget(ch, v)
	data, err := d.download(ctx, name, validator.MaxFileSize)
	if err != nil {
		d.event(wire.Event{Kind: wire.EventFetchFailed, Channel: ch, Version: v, Reason: tufReason(err), Evidence: map[string]string{"error": err.Error()}})
		return PollResult{Action: "failed", Version: v, Why: "download: " + err.Error()}
	}
	verdict, err := d.vet(ctx, data)
	if err != nil {
		return PollResult{Action: "failed", Version: v, Why: "preflight could not run: " + err.Error()}
	}
	if !verdict.Accepted() {
		return d.reject(v, verdict)
	}
	// Only the installer's Check hands out the Content that Stage takes. It
	// repeats Vet's static checks, so it refuses nothing Vet accepted unless
	// the boot record changed in between; the next poll vets again.
	c, err := d.in.Check(data)
	if err != nil {
		return PollResult{Action: "failed", Version: v, Why: err.Error()}
	}
	staged, err := d.in.Stage(c, installer.StageOptions{})
	if err != nil {
		return PollResult{Action: "failed", Version: v, Why: "stage: " + err.Error()}
	}
	if _, err := d.in.Activate(staged.Slot); err != nil {
		return PollResult{Action: "failed", Version: v, Why: "activate: " + err.Error()}
	}
	d.event(wire.Event{Kind: wire.EventInstalled, Channel: ch, Version: v, Codes: verdict.Codes(),
		Evidence: map[string]string{"slot": staged.Slot.String()}})
	d.log.Info("content installed as a trial; restarting the agent to load it", "channel", ch, "version", v, "slot", staged.Slot)
	d.restartAgent()
	return PollResult{Action: "installed", Version: v, Why: "staged and activated as a trial"}
}

// reject refuses version v for this run, as the check the verdict names
// did, and reports it.
func (d *Daemon) reject(v uint32, verdict validator.Verdict) PollResult {
	kind := wire.EventRejectedValidation
	if verdict.RefusedBy == validator.StagePreflight {
		kind = wire.EventRejectedPreflight
	}
	why := verdict.Err().Error()
	d.rejected[v] = why
	d.event(wire.Event{Kind: kind, Channel: d.cfg.Channel, Version: v, Reason: why, Codes: verdict.Codes()})
	return PollResult{Action: "rejected", Version: v, Why: why}
}

// vet runs the product's check on data: validation against the installed
// interpreter and the active content (a file of its channel must be
// newer), then preflight in a child process, on a copy in downloads/.
func (d *Daemon) vet(ctx context.Context, data []byte) (validator.Verdict, error) {
	opts := validator.VetOptions{
		Preflight: &validator.PreflightOptions{
			Command: d.opts.PreflightCommand,
			Timeout: d.cfg.Agent.PreflightTimeout.Duration,
		},
		TempDir: filepath.Join(d.cfg.Root, "downloads"),
	}
	if rec, err := bootguard.Read(d.in.RecordPath()); err == nil && rec.Active != bootguard.SlotNone {
		e := rec.Entry(rec.Active)
		opts.Installed = &validator.Installed{Channel: e.Channel, ContentVersion: e.Version}
	}
	return validator.Vet(ctx, data, d.opts.Capabilities, opts)
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

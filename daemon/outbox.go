package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/telemetry"
	"github.com/ringfence/ringfence/validator"
	"github.com/ringfence/ringfence/wire"
)

// Sender ships queued telemetry; telemetry.Sender is one. The daemon calls
// it only while it holds state.db, and hands it the outbox then. SetInfo
// gives it what each batch says of the host: the tags it asks for, the
// versions it runs, its sensor. Admission is the host's standing as the server said.
type Sender interface {
	Due(now time.Time) bool
	Flush(ctx context.Context, outbox telemetry.Outbox) (int, error)
	SetInfo(func() wire.HostInfo)
	Admission() wire.Admission
}

// outbox is the daemon's telemetry on its way out. Events queue in memory
// (the agent's loader may hold state.db), move into state.db's outbox and
// the journal when the daemon holds the root, and leave through the Sender.
type outbox struct {
	cfg    *hostconfig.Config      // Root (the journal), Channel and tags (what a batch says)
	caps   *validator.Capabilities // the installed sensor (what a batch says)
	sender Sender                  // nil: events stay in state.db
	health *health                 // the agent's last health sample (what a batch says)
	clock  clock.Clock
	log    *slog.Logger

	queue    []wire.Event    // events not yet in state.db
	reported map[string]bool // revert events already queued, by id
}

// add queues ev, stamped now when it has no time.
func (o *outbox) add(ev wire.Event) {
	if ev.Time.IsZero() {
		ev.Time = o.clock.Now().UTC()
	}
	o.queue = append(o.queue, ev)
}

// persist moves queued events into in's state.db and the journal; with the
// root not held (in nil) or no state.db, they stay queued.
func (o *outbox) persist(in *installer.Installer) {
	if in == nil || in.State() == nil {
		return
	}
	for len(o.queue) > 0 {
		ev, err := in.State().Enqueue(o.queue[0])
		if err != nil {
			o.log.Warn("telemetry outbox", "err", err)
			return
		}
		o.queue = o.queue[1:]
		if ev.Seq == 0 {
			continue // queued before (a deterministic id)
		}
		if err := journal(o.cfg.Root, ev); err != nil {
			o.log.Warn("event journal", "err", err)
		}
	}
}

// heartbeat queues a heartbeat, with what runs when the root is held: one
// per channel that has content, or one with none.
func (o *outbox) heartbeat(in *installer.Installer) {
	sent := false
	if in != nil {
		for _, ch := range o.cfg.Followed() {
			if e, ok := activeEntry(readBoot(installer.RecordPathOf(o.cfg.Root, ch))); ok {
				o.add(wire.Event{Kind: wire.EventHeartbeat, Channel: e.Channel, Version: e.Version,
					Evidence: map[string]string{"state": e.State.String()}})
				sent = true
			}
		}
	}
	if !sent {
		o.add(wire.Event{Kind: wire.EventHeartbeat})
	}
}

// info is what every telemetry batch says of the host: its tags, for each
// channel it follows the version the channel's boot record has active (0:
// no content; the host is on the channel and counts in a first rollout's
// stages), the installed sensor's version and manifest digest, and the
// agent's last health sample when it was measured on those versions.
func (o *outbox) info() wire.HostInfo {
	versions := o.versions()
	return wire.HostInfo{Tags: o.cfg.HostTags(), Versions: versions, Sensor: o.caps.Sensor, Manifest: o.caps.Digest,
		Health: o.health.forBatch(versions)}
}

// versions maps each channel the host follows (decimal) to the version its
// boot record has active, 0 for none: a batch's versions.
func (o *outbox) versions() map[string]uint32 {
	versions := map[string]uint32{}
	for _, ch := range o.cfg.Followed() {
		v := uint32(0)
		if e, ok := activeEntry(readBoot(installer.RecordPathOf(o.cfg.Root, ch))); ok && e.Channel == ch {
			v = e.Version
		}
		versions[strconv.FormatUint(uint64(ch), 10)] = v
	}
	return versions
}

// reportReverts queues the reverts in in's boot record not reported yet:
// the guard made them alone (a crash while loading, tries used up) or an
// admin did offline. Event ids are derived from the record, so a restarted
// daemon that reports one again is deduplicated upstream. It returns the
// versions it reported, by channel.
func (o *outbox) reportReverts(in *installer.Installer) map[uint32][]uint32 {
	reverted := map[uint32][]uint32{}
	for _, ch := range in.Channels() {
		if vs := o.reportChannelReverts(readBoot(installer.RecordPathOf(in.Root(), ch))); len(vs) > 0 {
			reverted[ch] = vs
		}
	}
	return reverted
}

// reportChannelReverts is reportReverts for one channel's record.
func (o *outbox) reportChannelReverts(rec bootguard.Record) []uint32 {
	var reverted []uint32
	for _, s := range []bootguard.Slot{bootguard.SlotA, bootguard.SlotB} {
		e := rec.Entry(s)
		if e.State != bootguard.StateBad {
			continue
		}
		id := fmt.Sprintf("reverted-%d-%d-%v", e.Channel, e.Version, e.Reason)
		if o.reported[id] {
			continue
		}
		o.reported[id] = true
		typ := wire.EventReverted
		if e.Reason == bootguard.ReasonRecovered {
			typ = wire.EventRecoveredOffline
		}
		o.add(wire.Event{ID: id, Kind: typ, Channel: e.Channel, Version: e.Version, Reason: e.Reason.String(), Critical: true,
			Evidence: map[string]string{"running": describeActive(rec)}})
		o.add(wire.Event{ID: "quarantined-" + id, Kind: wire.EventQuarantined, Channel: e.Channel, Version: e.Version, Reason: e.Reason.String(), Critical: true})
		msg := "content reverted by the boot guard and quarantined"
		if e.Reason == bootguard.ReasonManual {
			msg = "content reverted on request (a version the rollout plan denies, or an admin) and quarantined"
		}
		o.log.Warn(msg, "channel", e.Channel, "version", e.Version, "reason", e.Reason, "running", describeActive(rec))
		reverted = append(reverted, e.Version)
	}
	return reverted
}

// send ships state.db's outbox through the Sender when one is set and not
// backing off. It returns the host's standing and how the send went
// ("sent", or why not), and false when nothing was tried.
func (o *outbox) send(ctx context.Context, in *installer.Installer) (adm wire.Admission, outcome string, tried bool) {
	if o.sender == nil || in.State() == nil || !o.sender.Due(o.clock.Now()) {
		return "", "", false
	}
	n, err := o.sender.Flush(ctx, in.State())
	outcome = "sent"
	if err != nil {
		outcome = fmt.Sprintf("not sent, kept in the outbox: %v", err)
		o.log.Warn("telemetry not sent; kept in the outbox", "err", err, "sent", n)
	} else if n > 0 {
		o.log.Debug("telemetry sent", "events", n)
	}
	return o.sender.Admission(), outcome, true
}

// observe reports the reverts the boot record holds that were not reported
// yet, and forgets a trial among them.
func (d *Daemon) observe() {
	for ch, vs := range d.out.reportReverts(d.in) {
		for _, v := range vs {
			d.trial.reverted(ch, v)
		}
	}
}

// flush persists the queued events and sends the outbox, when the daemon
// can hold the root (not while the agent loads).
func (d *Daemon) flush(ctx context.Context) {
	if d.sup.starting() || d.open() != nil {
		return
	}
	d.out.persist(d.in)
	adm, outcome, tried := d.out.send(ctx, d.in)
	if tried && (adm != d.status.Admission || outcome != d.status.Telemetry) {
		d.setStatus(func(s *Status) { s.Admission, s.Telemetry = adm, outcome })
	}
}

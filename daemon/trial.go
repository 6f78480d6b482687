package daemon

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/wire"
)

// trial watches the content on trial through its health window: the window
// starts when the agent reports it has loaded the trial, stops when the
// agent stops or dies, and when it passes with the agent up, the trial is
// marked good (last-known-good).
type trial struct {
	cfg   *hostconfig.Config // HealthWindow
	clock clock.Clock
	log   *slog.Logger
	out   *outbox

	info    *trialInfo       // the trial in its window; nil when none is
	healthC <-chan time.Time // fires when the window has passed
}

type trialInfo struct {
	channel, version uint32
	slot             bootguard.Slot
}

// begin starts the health window of the trial e, active in slot.
func (t *trial) begin(slot bootguard.Slot, e bootguard.Entry) {
	t.info = &trialInfo{channel: e.Channel, version: e.Version, slot: slot}
	t.healthC = t.clock.After(t.cfg.HealthWindow.Duration)
	t.out.add(wire.Event{Kind: wire.EventTrialStarted, Channel: e.Channel, Version: e.Version,
		Evidence: map[string]string{"tries_left": fmt.Sprint(e.Tries), "health_window": t.cfg.HealthWindow.String()}})
	t.log.Info("trial started", "channel", e.Channel, "version", e.Version, "health_window", t.cfg.HealthWindow)
}

// stopWindow stops the health window (the agent stopped or died); the
// trial stays known, and its window starts over at the agent's next load.
func (t *trial) stopWindow() { t.healthC = nil }

// end forgets the trial: it was reverted.
func (t *trial) end() { t.info = nil }

// reverted forgets the trial if it is version v of channel ch, which was
// reverted.
func (t *trial) reverted(ch, v uint32) {
	if t.info != nil && t.info.channel == ch && t.info.version == v {
		t.info = nil
	}
}

// markGood marks the trial good through in if it is still the active
// trial, and returns it as it now stands (GOOD).
func (t *trial) markGood(root *installer.Installer) (bootguard.Entry, bool) {
	info := t.info
	in, err := root.Channel(info.channel)
	if err != nil {
		t.log.Error("mark good", "err", err)
		return bootguard.Entry{}, false
	}
	rec := readBoot(in.RecordPath())
	e, ok := activeEntry(rec)
	if !ok || rec.Active != info.slot || e.State != bootguard.StateTrial || e.Version != info.version {
		return bootguard.Entry{}, false
	}
	if _, err := in.MarkGood(); err != nil {
		t.log.Error("mark good", "err", err)
		return bootguard.Entry{}, false
	}
	t.info = nil
	t.out.add(wire.Event{Kind: wire.EventHealthy, Channel: info.channel, Version: info.version})
	t.log.Info("trial passed its health window: new last-known-good", "channel", info.channel, "version", info.version)
	e.State = bootguard.StateGood
	return e, true
}

// onHealthWindow: the trial ran its window; it becomes last-known-good if
// it is still the active trial and the agent still runs it. It reports
// whether it did.
func (d *Daemon) onHealthWindow() bool {
	if d.trial.info == nil || !d.sup.ready || d.open() != nil {
		return false
	}
	if _, ok := d.trial.markGood(d.in); !ok {
		return false
	}
	d.setStatus(func(s *Status) { s.Running = d.describeRunning() })
	d.out.persist(d.in)
	return true
}

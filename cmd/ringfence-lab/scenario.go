package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/validator"
)

// maxShown bounds the per-host lines a scenario prints for one kind of
// event (crashes, reverts, rejections, recalls); the table counts them all.
const maxShown = 5

// publisherRefuses is scenario 2: the Channel File 291 shape checked by the
// publisher against the interpreter the legacy hosts really run (7.11).
func (l *lab) publisherRefuses(ctx context.Context, id string) (Row, error) {
	c := l.files[l.cfg.Content.CF291]
	row := Row{ID: id, seq: l.current, Scenario: "cf291 at the publisher", Channel: c.channel, Version: c.version, PublisherOnly: true, Hosts: len(l.hosts)}
	began := time.Now()
	l.tl.printf("scenario %s: the publisher checks %s (version %d) against sensor 7.11, the interpreter the legacy hosts run", id, c, c.version)
	// Run where the file is, so the publisher's messages name it as a
	// pipeline would see it.
	file := c.path
	out, err := runTool(ctx, filepath.Dir(file), filepath.Join(l.opts.Work, "publisher.log"), l.bin("ringfence-server"), "publish",
		"--repo", l.repo, "--keys", l.keys, "--channel", fmt.Sprint(c.channel),
		"--capabilities", l.capabilities("7.11"), filepath.Base(file))
	if ctx.Err() != nil {
		return row, ctx.Err()
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err == nil {
		row.Outcome = "published (!)"
		row.Problems = append(row.Problems, "the publisher accepted the Channel File 291 shape against sensor 7.11")
		return row, nil
	}
	row.Outcome = "refused by the publisher"
	for i, line := range lines {
		if i < 2 || i == len(lines)-1 {
			l.tl.printf("  | %s", line)
		} else if i == 2 {
			l.tl.printf("  | ... (%d more lines in publisher.log)", len(lines)-3)
		}
	}
	code := "FIELD_NOT_SUPPLIED"
	if !strings.Contains(out, code) {
		row.Problems = append(row.Problems, "the publisher refused it, but not with "+code+": "+lines[0])
	}
	row.Notes = append(row.Notes, "refused before signing: nothing was published, no host saw it")
	healthy, _ := l.onGood(c.channel, l.lastGood())
	row.Healthy = healthy
	row.Seconds = time.Since(began).Seconds()
	return row, nil
}

// lastGood is the last good version the fleet was given on the first
// channel.
func (l *lab) lastGood() uint32 {
	g := l.cfg.Content.Good
	return l.files[g[len(g)-1]].version
}

// onGood counts the hosts on version v of channel ch, GOOD, agent running,
// and says whether every host is.
func (l *lab) onGood(ch, v uint32) (int, bool) {
	n := 0
	for _, h := range l.hosts {
		if h.runsGood(ch, v) {
			n++
		}
	}
	return n, n == len(l.hosts)
}

// polledSince reports whether every host finished a poll after t.
func (l *lab) polledSince(t time.Time) bool {
	for _, h := range l.hosts {
		st, err := h.status()
		if err != nil || !st.LastPoll.After(t) {
			return false
		}
	}
	return true
}

// stages is the plan the lab asks for: the configured stages, min_hosts 0
// meaning every host of the stage.
func (l *lab) stages() []server.StageRequest {
	var out []server.StageRequest
	for _, s := range l.cfg.Rollout.Stages {
		st := server.StageRequest{Name: s.Name, Percent: s.Percent, Bake: s.Bake.String(), MinHosts: s.MinHosts}
		if s.Canary {
			st.Tags = []string{CanaryTag}
			st.Percent = 0
		}
		if st.MinHosts == 0 {
			st.MinHosts = len(l.hosts)
		}
		out = append(out, st)
	}
	return out
}

// rings describes the stages with the hosts each adds: "canary 5 -> 20%
// +8 -> 100% +37".
func (l *lab) rings(v uint32) string {
	var ps []rollout.Stage
	for _, s := range l.stages() {
		ps = append(ps, rollout.Stage{Name: s.Name, Percent: s.Percent, Tags: s.Tags, Version: v})
	}
	adds := make([]int, len(ps))
	for _, h := range l.hosts {
		var tags []string
		if h.Canary {
			tags = []string{CanaryTag}
		}
		for i, s := range ps {
			if s.Contains(rollout.Host{ID: h.id, Tags: tags}) {
				adds[i]++
				break
			}
		}
	}
	var parts []string
	for i, s := range l.cfg.Rollout.Stages {
		p := fmt.Sprintf("%s +%d", s.Name, adds[i])
		if i == 0 {
			p = fmt.Sprintf("%s %d", s.Name, adds[i])
		}
		if s.Bake.Duration > 0 {
			p += fmt.Sprintf(" (bake %v)", s.Bake)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " -> ")
}

// expect is what a rollout scenario should end in.
type expect int

const (
	// expectComplete: good content, every stage passes, every host runs it.
	expectComplete expect = iota
	// expectRejected: content every host's own checks refuse (scenario 3):
	// the canaries reject it, the server halts and rolls back, nothing
	// was activated anywhere.
	expectRejected
	// expectCrash: content that passes every check against the manifest
	// and crashes the 7.11 agents on load (scenarios 4 and 5a): a legacy
	// canary with the reference preflight crashes loading it and its boot
	// guard reverts it; one with preflight by the installed agent refuses
	// it before activation; the server halts and rolls back, and no host
	// outside the canary group ever loads it.
	expectCrash
	// expectHealthHalt: content that passes every check and crashes
	// nothing, but costs the 7.11 agents several times their usual CPU
	// (scenario 6): no host crashes, reverts or refuses it, and the
	// server's gate halts it on its health test alone, in whatever stage
	// the evidence is enough, and rolls it back at once.
	expectHealthHalt
)

// healthHaltReason is what a halt's reason says when the gate's health
// test reached its threshold (controller.Rollout.Step words it); the lab
// also checks the rollout's health statistic (haltedOnHealth).
const healthHaltReason = "the agents' health"

// haltedOnHealth reports whether d is the gate's halt on its health test,
// v the rollout's view since: the reason names the agents' health, and
// the health test's own statistic reached the threshold.
func haltedOnHealth(d *controller.Decision, v server.View) bool {
	return d != nil && d.Kind == controller.KindHalt && d.Actor == "gate" &&
		strings.Contains(d.Reason, healthHaltReason) && v.Gate.Health >= v.Gate.Threshold
}

// track is one channel's rollout in a scenario: what it rolls out, what it
// should end in, and what the lab saw of it.
type track struct {
	id, label string
	c         content
	want      expect

	row        Row
	began      time.Time
	started    bool
	start      controller.Decision
	view       server.View
	seen       uint64 // the last decision shown
	halt, back *controller.Decision
	end        uint32 // the version every host should end on
	done       bool
	// waited names the hosts seen with the version staged, waiting for
	// another channel's trial to end (one trial at a time per host).
	waited map[string]bool
	// hold starts the rollout with manual_rollback: the halt freezes the
	// plan on its stage instead of denying the version at once, and the
	// lab rolls back (released) once every legacy canary has shown what it
	// does with the version: each gets it, whichever reports first.
	hold, released bool
	// slotted names the legacy canaries the lab saw with the version in
	// one of the channel's slots (any state), at any look.
	slotted map[string]bool
}

// rollout starts the tracks' rollouts, one per channel, back to back (at
// once, as the hosts see it), and follows them: the server's decisions and
// the hosts' failures as they happen, until each completed and every host
// runs its version (expectComplete), or was halted and rolled back and
// every host polled since and runs the version it started from. It returns
// a row per track; an error only when the lab cannot go on (interrupted,
// the server gone).
func (l *lab) rollout(ctx context.Context, ts ...*track) ([]Row, error) {
	rows := func() []Row {
		var out []Row
		for _, t := range ts {
			out = append(out, t.row)
		}
		return out
	}
	for _, t := range ts {
		t.row = Row{ID: t.id, seq: l.current, Scenario: t.label, Channel: t.c.channel, Version: t.c.version, Hosts: len(l.hosts)}
		t.waited, t.slotted = map[string]bool{}, map[string]bool{}
	}
	for _, t := range ts {
		req := server.StartRequest{
			ActionRequest: server.ActionRequest{Who: labActor, Why: fmt.Sprintf("scenario %s: %s", t.id, t.c)},
			Channel:       t.c.channel, Version: t.c.version, Stages: l.stages(),
			HealthWindow: l.cfg.Rollout.HealthWindow.String(), Grace: l.cfg.Rollout.Grace.String(), Silence: l.cfg.Rollout.Silence.String(),
			ManualRollback: t.hold,
		}
		t.began = time.Now()
		start, view, err := l.client.Start(ctx, req)
		if err != nil {
			if ctx.Err() != nil {
				return rows(), ctx.Err()
			}
			t.row.Outcome, t.done = "not started", true
			t.row.Problems = append(t.row.Problems, "the server refused the rollout: "+err.Error())
			continue
		}
		t.started, t.start, t.view, t.seen = true, start, view, start.Seq
		t.end = t.c.version // the version every host should end on
		if t.want != expectComplete {
			t.end = view.From
		}
	}
	for _, t := range ts {
		if !t.started {
			continue
		}
		from := "nothing"
		if t.view.From != 0 {
			from = fmt.Sprint(t.view.From)
		}
		l.tl.printf("scenario %s: rollout %d (%s) on channel %d started from %s: %s", t.id, t.c.version, t.c, t.c.channel, from, l.rings(t.c.version))
		if t.hold {
			var legacy []string
			for _, h := range l.legacyCanaries() {
				legacy = append(legacy, fmt.Sprintf("%s (%s)", h.Name, h.preflight()))
			}
			l.tl.printf("  legacy canaries %s; a halt freezes the plan (manual_rollback) until each has shown what it does with %d, then the lab rolls back",
				strings.Join(legacy, ", "), t.c.version)
		}
	}
	deadline := time.Now().Add(l.cfg.Rollout.Timeout.Duration)
	for {
		lines := l.collect()
		views, err := l.client.Rollouts(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return rows(), ctx.Err()
			}
			return rows(), fmt.Errorf("read the rollouts: %w", err)
		}
		all := true
		for _, t := range ts {
			if !t.started {
				continue
			}
			i := slices.IndexFunc(views, func(x server.View) bool { return x.Channel == t.c.channel })
			if i < 0 {
				return rows(), fmt.Errorf("the server lost the rollout of channel %d", t.c.channel)
			}
			t.view = views[i]
			// With several channels, the server's lines say which one
			// they are about.
			prefix := ""
			if len(ts) > 1 {
				prefix = fmt.Sprintf("channel %d: ", t.c.channel)
			}
			lines = append(lines, l.decisions(t, prefix)...)
			if t.done {
				continue
			}
			lines = append(lines, l.waits(t)...)
			if t.want == expectCrash {
				l.lookSlots(t)
			}
			if t.hold && t.halt != nil && t.back == nil && !t.released {
				if err := l.release(ctx, t); err != nil {
					return rows(), err
				}
			}
			if l.settled(t) {
				// The last events of the track, then its row: the other
				// tracks go on.
				lines = append(lines, l.collect()...)
				l.printLines(lines)
				lines = nil
				l.finish(t)
			}
			all = all && t.done
		}
		l.printLines(lines)
		if all {
			break
		}
		if time.Now().After(deadline) {
			for _, t := range ts {
				if t.done {
					continue
				}
				t.row.Problems = append(t.row.Problems, fmt.Sprintf("not finished after %v (rollout %s)", l.cfg.Rollout.Timeout, t.view.State))
				if t.view.State == controller.StateRunning || t.view.State == controller.StatePaused || t.view.State == controller.StateHalted {
					if _, _, err := l.client.Act(ctx, t.c.channel, controller.KindRollback, labActor, "the lab's scenario timed out"); err == nil {
						l.tl.printf("  the lab rolled channel %d's rollout back by hand: the scenario timed out", t.c.channel)
					}
				}
				l.printLines(l.collect())
				l.finish(t)
			}
			break
		}
		if err := sleep(ctx, tick); err != nil {
			return rows(), err
		}
	}
	for _, kind := range []eventKind{evCrashed, evReverted, evRejected, evRecalled} {
		if c := l.shownCount(fmt.Sprintf("%d/%s", l.current, kind)); c > maxShown {
			l.tl.printf("  (and %d more hosts %s; the table counts them all)", c-maxShown, kind)
		}
	}
	return rows(), nil
}

// decisions reads the track's new decisions: their timeline lines (after
// prefix), and the halt and the rollback.
func (l *lab) decisions(t *track, prefix string) []timedLine {
	var lines []timedLine
	for j := len(t.view.Decisions) - 1; j >= 0; j-- {
		d := t.view.Decisions[j]
		if d.Seq <= t.seen {
			continue
		}
		t.seen = d.Seq
		if text := l.decisionLine(t.view, d); text != "" {
			lines = append(lines, timedLine{d.Time, "  " + prefix + strings.TrimPrefix(text, "  ")})
		}
		switch d.Kind {
		case controller.KindHalt:
			t.halt = &d
			if strings.Contains(d.Reason, healthHaltReason) {
				lines = append(lines, timedLine{d.Time, "  " + prefix + l.healthLine(t, d)})
			}
		case controller.KindRollback:
			t.back = &d
		case controller.KindAdvance, controller.KindComplete:
			// The gate judged a stage with no host in it: a canary
			// group it did not hear from (since the rollout started)
			// was passed over, not passed.
			if d.Actor == "gate" && d.Evidence.StageHosts == 0 {
				i := d.Stage
				if d.Kind == controller.KindAdvance {
					i--
				}
				name := fmt.Sprint(i)
				if i >= 0 && i < len(t.view.Stages) {
					name = t.view.Stages[i].Name
				}
				t.row.Problems = append(t.row.Problems, fmt.Sprintf("the server's gate passed stage %s (%s) counting no host in it (0 of 0 healthy): it had heard from none of its hosts since the rollout started",
					name, d.Kind))
			}
		}
	}
	return lines
}

// healthLine says what the health test saw when it halted the track's
// rollout: the halt decision's counts, the limits the controls set then
// (the view's), and how many of the hosts on the version run a 7.11 agent,
// by their journals.
func (l *lab) healthLine(t *track, d controller.Decision) string {
	ev := d.Evidence
	on, legacy := l.loadedSoFar(t)
	s := fmt.Sprintf("health test: %d of %d treated hosts judged unhealthy (%d hosts had loaded %d, %d of them 7.11 agents); %d of %d controls beyond the limits, so a healthy host is at most %.2g%% likely to be; statistic %.2f reached %.2f",
		ev.TreatedUnhealthy, ev.TreatedJudged, on, t.c.version, legacy, ev.ControlUnhealthy, ev.ControlSampled, 100*ev.HealthP0, ev.Statistic, ev.Threshold)
	if lim := t.view.Gate.HealthLimits; lim != nil {
		s += "; the controls' limits: " + limitsText(lim)
	}
	return s
}

// limitsText says the health test's limits: "CPU 0.020 cores, memory 25.0
// MB, latency p99 60 µs, events 76.8/s at least (from 22 controls)".
func limitsText(lim *controller.HealthLimits) string {
	return fmt.Sprintf("CPU %.3f cores, memory %.1f MB, latency p99 %.0f µs, events %.1f/s at least (from %d controls)",
		lim.CPU, lim.RSS/1e6, lim.Latency, lim.Events, lim.Controls)
}

// loadedSoFar counts the hosts whose journal says they loaded the track's
// version in this scenario so far, and the 7.11 agents among them.
func (l *lab) loadedSoFar(t *track) (all, legacy int) {
	for _, h := range l.hosts {
		if h.did(l.current, evInstalled, t.c.channel, t.c.version) {
			all++
			legacy += b2i(h.Legacy)
		}
	}
	return all, legacy
}

// waits notes the hosts that have the track's version staged and waiting
// for another channel's trial to end: their last poll said it waits, and
// the channel's boot record holds the version staged, not active. Their
// first few are lines.
func (l *lab) waits(t *track) []timedLine {
	var lines []timedLine
	ch, v := t.c.channel, t.c.version
	for _, h := range l.hosts {
		if t.waited[h.Name] {
			continue
		}
		st, err := h.status()
		if err != nil {
			continue
		}
		i := slices.IndexFunc(st.Poll.Channels, func(r daemon.PollResult) bool {
			return r.Channel == ch && r.Version == v && r.Action == daemon.ActionWaiting
		})
		if i < 0 {
			continue
		}
		rec, err := h.record(ch)
		if err != nil || !slices.ContainsFunc([]bootguard.Slot{bootguard.SlotA, bootguard.SlotB}, func(s bootguard.Slot) bool {
			e := rec.Entry(s)
			return s != rec.Active && e.State == bootguard.StateStaged && e.Version == v
		}) {
			continue
		}
		t.waited[h.Name] = true
		if len(t.waited) <= maxShown {
			lines = append(lines, timedLine{st.LastPoll, fmt.Sprintf("  %s: %d %s", h.label(), v, st.Poll.Channels[i].Why)})
		}
	}
	return lines
}

// legacyCanaries are the canaries that run the 7.11 agent.
func (l *lab) legacyCanaries() []*host {
	var out []*host
	for _, h := range l.hosts {
		if h.Legacy && h.Canary {
			out = append(out, h)
		}
	}
	return out
}

// lookSlots notes the legacy canaries whose boot record for the track's
// channel holds its version in a slot now, in any state.
func (l *lab) lookSlots(t *track) {
	for _, h := range l.legacyCanaries() {
		if rec, err := h.record(t.c.channel); err == nil && slotOf(rec, t.c.version) != bootguard.SlotNone {
			t.slotted[h.Name] = true
		}
	}
}

// slotOf is the slot of rec that holds version v, or SlotNone.
func slotOf(rec bootguard.Record, v uint32) bootguard.Slot {
	for _, s := range []bootguard.Slot{bootguard.SlotA, bootguard.SlotB} {
		if e := rec.Entry(s); e.Version == v {
			return s
		}
	}
	return bootguard.SlotNone
}

// shown says what a legacy canary has done with the track's version so
// far, as its journal says: "reverted it", "refused it", "ran it" (healthy),
// or "" while it has not shown anything yet.
func (l *lab) shown(h *host, t *track) string {
	for _, ev := range h.events {
		if ev.scenario != l.current || ev.Channel != t.c.channel || ev.Version != t.c.version {
			continue
		}
		switch ev.Kind {
		case evReverted:
			return "reverted it"
		case evRejected:
			return "refused it"
		case evHealthy:
			return "ran it"
		}
	}
	return ""
}

// release rolls a held track back, as the operator: once every legacy
// canary has shown what it does with the version, or when that takes
// longer than a poll and a health window after the halt (the row then
// says which showed nothing).
func (l *lab) release(ctx context.Context, t *track) error {
	var done, silent []string
	for _, h := range l.legacyCanaries() {
		if what := l.shown(h, t); what != "" {
			done = append(done, h.Name+" "+what)
		} else {
			silent = append(silent, h.Name)
		}
	}
	bound := l.cfg.Host.PollInterval.Duration + l.cfg.Host.PollJitter.Duration + l.cfg.Host.HealthWindow.Duration
	if len(silent) > 0 && time.Since(t.halt.Time) < bound {
		return nil
	}
	v, from := t.c.version, t.view.From
	why := fmt.Sprintf("once the legacy canaries had shown what they do with %d (%s): every host back to version %d, version %d denied",
		v, strings.Join(done, ", "), from, v)
	if len(silent) > 0 {
		why = fmt.Sprintf("%v after the halt, %s still without an outcome for %d: every host back to version %d, version %d denied",
			bound, strings.Join(silent, ", "), v, from, v)
	}
	t.released = true
	if _, _, err := l.client.Act(ctx, t.c.channel, controller.KindRollback, labActor, why); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		t.row.Problems = append(t.row.Problems, "the lab could not roll back after the halt: "+err.Error())
	}
	return nil
}

// labActor is who the lab's own actions on the server are by.
const labActor = "ringfence-lab"

// settled reports whether the track ended: completed and every host runs
// its version, or rolled back and every host runs the version it started
// from, having polled since the rollback.
func (l *lab) settled(t *track) bool {
	switch t.view.State {
	case controller.StateCompleted:
		t.end = t.c.version
		_, all := l.onGood(t.c.channel, t.c.version)
		return all
	case controller.StateRolledBack:
		t.end = t.view.From
		if t.back == nil {
			return false
		}
		// A poll that began before the rollback was signed may still
		// install the version: only polls that ended a poll interval
		// after it surely read the rollback.
		_, all := l.onGood(t.c.channel, t.view.From)
		return all && l.polledSince(t.back.Time.Add(l.cfg.Host.PollInterval.Duration))
	}
	return false
}

// finish ends the track: its row, and its line.
func (l *lab) finish(t *track) {
	t.done = true
	l.summarise(t)
	t.row.Seconds = time.Since(t.began).Seconds()
	l.tl.printf("scenario %s: channel %d %s after %.0fs; %d of %d hosts on %d (GOOD)", t.id, t.c.channel, t.row.Outcome, t.row.Seconds, t.row.Healthy, len(l.hosts), t.end)
}

// decisionLine is one of the server's decisions as a timeline line (none
// for a start or a wait).
func (l *lab) decisionLine(v server.View, d controller.Decision) string {
	stage := func(i int) string {
		if i >= 0 && i < len(v.Stages) {
			return v.Stages[i].Name
		}
		return fmt.Sprint(i)
	}
	ev := d.Evidence
	by := d.Actor
	if by == "gate" {
		by = "the gate"
	}
	switch d.Kind {
	case controller.KindStart, controller.KindWait:
		return ""
	case controller.KindAdvance:
		return fmt.Sprintf("  stage %s: %d of %d hosts healthy on %d -> advance to %s (%s)", stage(d.Stage-1), ev.Healthy, ev.StageHosts, v.To, stage(d.Stage), l.fleetOn(v.Channel, v.To))
	case controller.KindComplete:
		return fmt.Sprintf("  stage %s: %d of %d hosts healthy on %d -> completed (%s)", stage(d.Stage), ev.Healthy, ev.StageHosts, v.To, l.fleetOn(v.Channel, v.To))
	case controller.KindHalt:
		return fmt.Sprintf("  HALT in stage %s by %s: %s", stage(d.Stage), by, shortReason(l.names(d.Reason)))
	case controller.KindRollback:
		return fmt.Sprintf("  ROLLBACK by %s: %s (a signed plan)", by, l.names(d.Reason))
	default:
		return fmt.Sprintf("  %s in stage %s by %s: %s", d.Kind, stage(d.Stage), d.Actor, l.names(d.Reason))
	}
}

// fleetOn says how many hosts run version v of channel ch now, by their
// boot records.
func (l *lab) fleetOn(ch, v uint32) string {
	nt, ng := 0, 0
	for _, h := range l.hosts {
		e, ok, err := h.active(ch)
		switch {
		case err != nil || !ok || e.Version != v:
		case e.State == bootguard.StateGood:
			ng++
		case e.State == bootguard.StateTrial:
			nt++
		}
	}
	s := fmt.Sprintf("fleet: %d of %d hosts run %d as GOOD", ng, len(l.hosts), v)
	if nt > 0 {
		s += fmt.Sprintf(", %d as a trial", nt)
	}
	return s
}

// shortReason shortens a halt reason that carries a validator's whole
// report to its kind and its subject: "rejected-validation of version 1005
// in the canary group (host h02)".
func shortReason(r string) string {
	const maxReason = 140
	i := strings.LastIndex(r, " of version ")
	if len(r) <= maxReason || i < 0 {
		return r
	}
	kind, _, _ := strings.Cut(r, ":")
	return kind + r[i:]
}

// names puts the lab's host names in place of host ids.
func (l *lab) names(s string) string {
	for id, h := range l.byID {
		s = strings.ReplaceAll(s, id, h.Name)
	}
	return s
}

// collect reads what every host's journal says it did since the last call,
// keeps it for the current scenario, and returns the failures' lines (a few
// per kind).
func (l *lab) collect() []timedLine {
	var out []timedLine
	for _, h := range l.hosts {
		for _, ev := range h.journal.read() {
			h.events = append(h.events, scenarioEvent{scenario: l.current, hostEvent: ev})
			var line string
			switch ev.Kind {
			case evCrashed:
				while := ""
				if ev.During == "load" {
					while = " while loading"
					if ev.Version != 0 {
						while += fmt.Sprintf(" %d", ev.Version)
					}
				}
				line = fmt.Sprintf("%s: agent crashed%s: %s", h.label(), while, ev.Detail)
			case evReverted:
				line = fmt.Sprintf("%s: boot guard reverted %d (%s), quarantined it", h.label(), ev.Version, ev.Detail)
			case evRejected:
				line = fmt.Sprintf("%s: rejected %d, its own %s says %s", h.label(), ev.Version, checkName(ev.Check), clip(ev.Detail, 160))
			case evRecalled:
				line = fmt.Sprintf("%s: left %d, which the signed plan denies (rolled back upstream); running %s", h.label(), ev.Version, ev.Detail)
			default:
				continue
			}
			key := fmt.Sprintf("%d/%s", l.current, ev.Kind)
			h.shown[key]++
			if l.shownCount(key) <= maxShown {
				out = append(out, timedLine{ev.Time, "  " + line})
			}
		}
	}
	return out
}

// timedLine is a timeline line and when what it says happened.
type timedLine struct {
	at   time.Time
	text string
}

// printLines prints lines in the order they happened: the hosts' failures
// (their clocks) among the server's decisions (its clock; the same
// machine's).
func (l *lab) printLines(lines []timedLine) {
	slices.SortStableFunc(lines, func(a, b timedLine) int { return a.at.Compare(b.at) })
	for _, x := range lines {
		l.tl.printf("%s", x.text)
	}
}

// shownCount is how many hosts reported this kind in this scenario so far.
func (l *lab) shownCount(key string) int {
	n := 0
	for _, h := range l.hosts {
		n += h.shown[key]
	}
	return n
}

// checkName names the host-side check that refused content.
func checkName(check string) string {
	if check == checkPreflight {
		return "preflight"
	}
	return "validator"
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// summarise fills the track's row from the hosts' events of the scenario
// on its channel, their state now, and the server's decisions; it checks
// what the track expects.
func (l *lab) summarise(t *track) {
	row, view, want := &t.row, t.view, t.want
	ch, v := t.c.channel, t.c.version
	var firstFailure time.Time
	for _, h := range l.hosts {
		var loaded, crashed, reverted, rejected, recalled bool
		by := ""
		for _, ev := range h.events {
			// A crash outside any trial names no channel: it counts on
			// every channel's row.
			if ev.scenario != row.seq || (ev.Channel != ch && !(ev.Kind == evCrashed && ev.Channel == 0)) {
				continue
			}
			switch {
			case ev.Kind == evInstalled && ev.Version == v:
				loaded = true
			case ev.Kind == evCrashed:
				crashed = true
			case ev.Kind == evReverted && ev.Version == v:
				reverted = true
			case ev.Kind == evRejected && ev.Version == v:
				rejected, by = true, ev.Check
			case ev.Kind == evRecalled && ev.Version == v:
				recalled = true
			default:
				continue
			}
			if (ev.Kind == evCrashed || ev.Kind == evRejected) && (firstFailure.IsZero() || ev.Time.Before(firstFailure)) {
				firstFailure = ev.Time
			}
		}
		row.Loaded += b2i(loaded)
		if loaded && !h.Canary {
			row.LoadedOutsideCanary++
		}
		if loaded && h.Legacy {
			row.LoadedLegacy++
		}
		row.Crashed += b2i(crashed)
		row.Reverted += b2i(reverted)
		row.Recalled += b2i(recalled)
		if rejected {
			row.Rejected++
			if row.RejectedBy == nil {
				row.RejectedBy = map[string]int{}
			}
			row.RejectedBy[by]++
		}
	}
	row.Waited = len(t.waited)
	row.Healthy, _ = l.onGood(ch, t.end)
	row.Judged, row.Unhealthy = view.Gate.TreatedJudged, view.Gate.TreatedUnhealthy
	row.Outcome = view.State.String()
	if t.back != nil {
		row.RollbackBy = t.back.Actor
	}
	if t.halt != nil {
		row.Halted = true
		row.HaltSeconds = t.halt.Time.Sub(t.start.Time).Seconds()
		row.HaltReason = l.names(t.halt.Reason)
		if !firstFailure.IsZero() {
			row.CrashToHaltSeconds = max(t.halt.Time.Sub(firstFailure).Seconds(), 0)
		}
		if view.State == controller.StateRolledBack {
			row.Outcome = "halted, rolled back"
		}
		if strings.Contains(t.halt.Reason, healthHaltReason) {
			row.Health = l.healthHalt(t)
		}
	}
	canaries := 0
	for _, h := range l.hosts {
		canaries += b2i(h.Canary)
	}
	problem := func(ok bool, format string, args ...any) {
		if !ok {
			row.Problems = append(row.Problems, fmt.Sprintf(format, args...))
		}
	}
	problem(row.Healthy == len(l.hosts), "%d of %d hosts ended on version %d of channel %d (GOOD)", row.Healthy, len(l.hosts), t.end, ch)
	waited := ""
	if row.Waited > 0 {
		waited = fmt.Sprintf("; %d had it staged and waited for another channel's trial to end first (one trial at a time)", row.Waited)
	}
	if want == expectComplete {
		problem(view.State == controller.StateCompleted, "the rollout ended %s, not completed", view.State)
		problem(row.Loaded == len(l.hosts), "%d of %d hosts loaded %d", row.Loaded, len(l.hosts), v)
		problem(row.Crashed == 0, "%d hosts crashed on good content", row.Crashed)
		row.Notes = append(row.Notes, fmt.Sprintf("every stage baked and reported healthy: %d hosts on %d (GOOD)%s", row.Healthy, v, waited))
		return
	}
	if want == expectHealthHalt {
		l.healthOutcome(t, canaries, problem)
		return
	}
	problem(t.halt != nil && view.State == controller.StateRolledBack, "the server did not halt and roll back (state %s)", view.State)
	problem(row.LoadedOutsideCanary == 0, "%d hosts outside the canary group loaded %d", row.LoadedOutsideCanary, v)
	if want == expectRejected {
		problem(row.Loaded == 0, "%d hosts activated %d, which their checks should refuse", row.Loaded, v)
		problem(row.Rejected > 0, "no host rejected %d", v)
		row.Notes = append(row.Notes, fmt.Sprintf("%d of %d canaries fetched %d and refused it: %s; nothing was activated, %d hosts outside the canary group never fetched it",
			row.Rejected, canaries, v, byText(row.RejectedBy), len(l.hosts)-canaries))
	} else {
		refused := ""
		if row.Rejected > 0 {
			refused = fmt.Sprintf(" and %d refused it (%s)", row.Rejected, byText(row.RejectedBy))
		}
		row.Notes = append(row.Notes, fmt.Sprintf("%d of %d canaries loaded %d before the rollback%s; %d crashed and came back on %d by the boot guard alone, %d left it on the signed rollback; %d hosts outside the canary group never loaded it",
			row.Loaded, canaries, v, refused, row.Reverted, t.end, row.Recalled, len(l.hosts)-canaries))
		l.legacyOutcomes(t, problem)
	}
	if t.halt != nil {
		n := fmt.Sprintf("halted %.1fs after the start", row.HaltSeconds)
		if row.CrashToHaltSeconds > 0 {
			n += fmt.Sprintf(", %.1fs after the first host failed", row.CrashToHaltSeconds)
		}
		row.Notes = append(row.Notes, n+": "+shortReason(row.HaltReason))
	}
	if t.back != nil && t.halt != nil && t.back.Actor != t.halt.Actor {
		row.Notes = append(row.Notes, fmt.Sprintf("rolled back by %s %.1fs after the halt, %s", t.back.Actor, t.back.Time.Sub(t.halt.Time).Seconds(), l.names(t.back.Reason)))
	}
}

// healthHalt is the health test at the track's halt: the halt decision's
// evidence, and the limits the controls set then (the view's: the rollout
// is no longer evaluated after the halt).
func (l *lab) healthHalt(t *track) *HealthHalt {
	d, v := t.halt, t.view
	ev := d.Evidence
	h := &HealthHalt{Stage: fmt.Sprint(d.Stage), Judged: ev.TreatedJudged, Unhealthy: ev.TreatedUnhealthy, P0: ev.HealthP0,
		Controls: ev.ControlSampled, ControlsBeyond: ev.ControlUnhealthy, Statistic: v.Gate.Health, Threshold: ev.Threshold,
		Reported: v.Gate.Reported, Silence: v.Gate.Silence, Limits: v.Gate.HealthLimits}
	if d.Stage >= 0 && d.Stage < len(v.Stages) {
		h.Stage = v.Stages[d.Stage].Name
	}
	return h
}

// healthOutcome checks a track that expects the health test's halt
// (scenario 6) and writes its notes: the gate halted on the agents' health
// alone and rolled back at once; no host crashed on the version, reverted
// it or refused it in its own checks; each legacy canary installed it
// (its checks passed, preflight by its installed agent included). That
// every host ends on the version it started from is checked with every
// track.
func (l *lab) healthOutcome(t *track, canaries int, problem func(bool, string, ...any)) {
	row, view, v := &t.row, t.view, t.c.version
	halt := "no halt"
	if t.halt != nil {
		halt = fmt.Sprintf("halted by %s: %s", t.halt.Actor, t.halt.Reason)
	}
	problem(haltedOnHealth(t.halt, view), "the server did not halt on %s (health statistic %.2f, threshold %.2f; state %s; %s)",
		healthHaltReason, view.Gate.Health, view.Gate.Threshold, view.State, halt)
	problem(view.State == controller.StateRolledBack && t.back != nil && t.back.Actor == "gate",
		"the gate did not roll back with its halt (state %s)", view.State)
	problem(row.Crashed == 0 && row.Reverted == 0 && row.Rejected == 0,
		"%d hosts crashed, %d reverted and %d refused %d, which passes every check and crashes nothing", row.Crashed, row.Reverted, row.Rejected, v)
	problem(row.Loaded > 0, "no host loaded %d", v)
	marked := 0
	for _, h := range l.hosts {
		marked += b2i(h.did(row.seq, evHealthy, t.c.channel, v))
	}
	row.Notes = append(row.Notes, fmt.Sprintf("%d hosts loaded %d (%d of the %d canaries, %d others), %d of them 7.11 agents; none crashed, reverted or refused it, and %d marked it GOOD at the end of their health window: nothing a host checks saw a problem",
		row.Loaded, v, row.Loaded-row.LoadedOutsideCanary, canaries, row.LoadedOutsideCanary, row.LoadedLegacy, marked))
	for _, h := range l.legacyCanaries() {
		rec, err := h.record(t.c.channel)
		_, evidence := legacyOutcome(h.events, row.seq, t.c.channel, v, t.slotted[h.Name], rec)
		if err != nil {
			evidence = fmt.Sprintf("boot record of channel %d: %v", t.c.channel, err)
		}
		problem(h.did(row.seq, evInstalled, t.c.channel, v), "%s (%s) never installed %d: %s", h.Name, h.preflight(), v, evidence)
		row.Notes = append(row.Notes, fmt.Sprintf("%s (7.11 agent, %s): %s", h.Name, h.preflight(), evidence))
	}
	if hh := row.Health; hh != nil {
		row.Notes = append(row.Notes, fmt.Sprintf("halted in stage %s %.1fs after the start by the health test alone: %d of %d treated hosts judged unhealthy, %d of %d controls beyond the limits (a healthy host at most %.2g%% likely to be); its statistic %.2f reached %.2f, while the other two tests' stood at %.2f (failures reported) and %.2f (silence)",
			hh.Stage, row.HaltSeconds, hh.Unhealthy, hh.Judged, hh.ControlsBeyond, hh.Controls, 100*hh.P0, hh.Statistic, hh.Threshold, hh.Reported, hh.Silence))
		if hh.Limits != nil {
			row.Notes = append(row.Notes, "the controls' limits at the halt: "+limitsText(hh.Limits))
		}
	}
	if t.back != nil {
		by := t.back.Actor
		if by == "gate" {
			by = "the gate"
		}
		row.Notes = append(row.Notes, fmt.Sprintf("rolled back by %s with the halt, %d denied: every host back on %d, the %d that had loaded %d by leaving it on the signed rollback",
			by, v, t.end, row.Recalled, v))
	}
}

// legacyOutcomes fills the row's LegacyCanaries and checks each against
// the preflight it runs: the reference preflight lets the version through
// to a crash on load and the boot guard's revert; preflight by the
// installed agent refuses it, and it never reaches a slot. A held rollout
// (scenario 4) waited for both, so each must have done it; otherwise the
// halt on the first report may come before another's poll, and a legacy
// canary that never fetched the version is no failure, as long as one of
// them caught it.
func (l *lab) legacyOutcomes(t *track, problem func(bool, string, ...any)) {
	row, ch, v := &t.row, t.c.channel, t.c.version
	caught := 0
	for _, h := range l.legacyCanaries() {
		rec, err := h.record(ch)
		out, evidence := legacyOutcome(h.events, row.seq, ch, v, t.slotted[h.Name], rec)
		if err != nil {
			out, evidence = OutcomeOther, fmt.Sprintf("boot record of channel %d: %v", ch, err)
		}
		row.LegacyCanaries = append(row.LegacyCanaries, LegacyCanary{Host: h.Name, Preflight: h.preflight(), Outcome: out, Evidence: evidence})
		row.Notes = append(row.Notes, fmt.Sprintf("%s (%s): %s; %s", h.Name, h.preflight(), out, evidence))
		want := OutcomeReverted
		if h.AgentPreflight {
			want = OutcomeRefused
		}
		if out == want {
			caught++
		}
		problem(out == want || !t.hold && out == OutcomeNotFetched, "%s (%s): %s, not %q; %s", h.Name, h.preflight(), out, want, evidence)
	}
	problem(caught > 0, "no legacy canary caught %d", v)
}

// legacyOutcome says what a legacy canary did with version v of channel
// ch in scenario seq, and what says so: its journal's events of the
// scenario, whether the lab saw v in one of the channel's slots during it
// (slotted), and the channel's boot record now (rec).
func legacyOutcome(evs []scenarioEvent, seq int, ch, v uint32, slotted bool, rec bootguard.Record) (outcome, evidence string) {
	var installed, trial, loadCrash, ran bool
	revert, rejectedBy := "", ""
	var codes, journal []string
	note := func(s string) {
		if !slices.Contains(journal, s) {
			journal = append(journal, s)
		}
	}
	for _, ev := range evs {
		// A crash outside any trial names no channel or version.
		if ev.scenario != seq || !(ev.Channel == ch && ev.Version == v || ev.Kind == evCrashed && ev.Channel == 0) {
			continue
		}
		switch ev.Kind {
		case evInstalled:
			installed = true
			note("installed")
		case evTrial:
			trial = true
			note("trial-started")
		case evCrashed:
			if ev.During == "load" {
				loadCrash = true
				note("crashed while loading")
			} else {
				note("crashed while running")
			}
		case evReverted:
			revert = ev.Reason
			note("reverted (" + ev.Reason + ")")
		case evRejected:
			rejectedBy = ev.Check
			codes = append(codes, ev.Codes...)
			slices.Sort(codes)
			note("rejected-" + ev.Check + " (" + strings.Join(slices.Compact(codes), ", ") + ")")
		case evHealthy:
			ran = true
			note("healthy")
		case evRecalled:
			note("recalled")
		}
	}
	j := "journal: nothing about it"
	if len(journal) > 0 {
		j = "journal: " + strings.Join(journal, ", ")
		if !installed {
			j += ", never installed"
		}
	}
	slot := slotOf(rec, v)
	var b string
	var held *bootguard.Entry
	if slot == bootguard.SlotNone {
		b = fmt.Sprintf("boot record: no slot holds %d", v)
		if slotted {
			b += ", though one did during the scenario"
		} else {
			b += ", nor did one at any of the lab's looks"
		}
	} else {
		held = rec.Entry(slot)
		b = fmt.Sprintf("boot record: slot %s holds %d %s", slot, v, held.State)
		if held.Reason != bootguard.ReasonNone {
			b += " (" + held.Reason.String() + ")"
		}
	}
	evidence = j + "; " + b
	switch {
	case installed && loadCrash && revert == bootguard.ReasonLoadCrash.String() &&
		held != nil && held.State == bootguard.StateBad && held.Reason == bootguard.ReasonLoadCrash:
		return OutcomeReverted, evidence
	case rejectedBy == checkPreflight && slices.Contains(codes, string(validator.CodePreflightCrash)) &&
		!installed && !trial && !loadCrash && !ran && !slotted && held == nil:
		return OutcomeRefused, evidence
	case len(journal) == 0 && !slotted && held == nil:
		return OutcomeNotFetched, evidence
	}
	return OutcomeOther, evidence
}

func byText(by map[string]int) string {
	var parts []string
	if n := by[checkValidation]; n > 0 {
		parts = append(parts, fmt.Sprintf("%d by their validator", n))
	}
	if n := by[checkPreflight]; n > 0 {
		parts = append(parts, fmt.Sprintf("%d by preflight", n))
	}
	if len(parts) == 0 {
		return "no host's check ran"
	}
	return strings.Join(parts, ", ")
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

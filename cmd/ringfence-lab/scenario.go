package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/server"
)

// maxShown bounds the per-host lines a scenario prints for one kind of
// event (crashes, reverts, rejections, recalls); the table counts them all.
const maxShown = 5

// publisherRefuses is scenario 2: the Channel File 291 shape checked by the
// publisher against the interpreter the legacy hosts really run (7.11).
func (l *lab) publisherRefuses(ctx context.Context, id string) (Row, error) {
	name := l.cfg.Content.CF291
	row := Row{ID: id, seq: l.current, Scenario: "cf291 at the publisher", Version: l.version[name], PublisherOnly: true, Hosts: len(l.hosts)}
	began := time.Now()
	l.tl.printf("scenario %s: the publisher checks %s (version %d) against sensor 7.11, the interpreter the legacy hosts run", id, name, l.version[name])
	// Run where the file is, so the publisher's messages name it as a
	// pipeline would see it.
	file := l.channelFile(name)
	out, err := runTool(ctx, filepath.Dir(file), filepath.Join(l.opts.Work, "publisher.log"), l.bin("ringfence-server"), "publish",
		"--repo", l.repo, "--keys", l.keys, "--channel", fmt.Sprint(l.cfg.Channel),
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
	healthy, _ := l.onGood(l.lastGood())
	row.Healthy = healthy
	row.Seconds = time.Since(began).Seconds()
	return row, nil
}

// lastGood is the last good version the fleet was given.
func (l *lab) lastGood() uint32 {
	g := l.cfg.Content.Good
	return l.version[g[len(g)-1]]
}

// onGood counts the hosts on version v, GOOD, agent running, and says
// whether every host is.
func (l *lab) onGood(v uint32) (int, bool) {
	want, n := goodText(l.cfg.Channel, v), 0
	for _, h := range l.hosts {
		if st, err := h.status(); err == nil && st.Running == want && st.Agent == daemon.AgentRunning {
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
	// expectCrash: content that passes every check and crashes the 7.11
	// agents on load (scenario 4): the legacy canaries crash and revert,
	// the server halts and rolls back, no host outside the canary group
	// ever loads it.
	expectCrash
)

// rollout starts a rollout of the named content and follows it: the
// server's decisions and the hosts' failures as they happen, until it
// completed and every host runs it (expectComplete), or until it was
// halted and rolled back and every host polled since and runs the version
// it started from. It returns the scenario's row; an error only when the lab
// cannot go on (interrupted, the server gone).
func (l *lab) rollout(ctx context.Context, id, label, name string, want expect) (Row, error) {
	v := l.version[name]
	row := Row{ID: id, seq: l.current, Scenario: label, Version: v, Hosts: len(l.hosts)}
	began := time.Now()
	req := server.StartRequest{
		ActionRequest: server.ActionRequest{Who: "ringfence-lab", Why: fmt.Sprintf("scenario %s: %s", id, name)},
		Channel:       l.cfg.Channel, Version: v, Stages: l.stages(),
		HealthWindow: l.cfg.Rollout.HealthWindow.String(), Grace: l.cfg.Rollout.Grace.String(), Silence: l.cfg.Rollout.Silence.String(),
	}
	start, view, err := l.client.Start(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return row, ctx.Err()
		}
		row.Outcome = "not started"
		row.Problems = append(row.Problems, "the server refused the rollout: "+err.Error())
		return row, nil
	}
	from := "nothing"
	if view.From != 0 {
		from = fmt.Sprint(view.From)
	}
	l.tl.printf("scenario %s: rollout %d (%s) started from %s: %s", id, v, name, from, l.rings(v))
	end := v // the version every host should end on
	if want != expectComplete {
		end = view.From
	}
	seen := start.Seq
	var halt, back *controller.Decision
	deadline := time.Now().Add(l.cfg.Rollout.Timeout.Duration)
	for {
		lines := l.collect()
		views, err := l.client.Rollouts(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return row, ctx.Err()
			}
			return row, fmt.Errorf("read the rollouts: %w", err)
		}
		i := slices.IndexFunc(views, func(x server.View) bool { return x.Channel == l.cfg.Channel })
		if i < 0 {
			return row, fmt.Errorf("the server lost the rollout of channel %d", l.cfg.Channel)
		}
		view = views[i]
		for j := len(view.Decisions) - 1; j >= 0; j-- {
			d := view.Decisions[j]
			if d.Seq <= seen {
				continue
			}
			seen = d.Seq
			if text := l.decisionLine(view, d); text != "" {
				lines = append(lines, timedLine{d.Time, text})
			}
			switch d.Kind {
			case controller.KindHalt:
				halt = &d
			case controller.KindRollback:
				back = &d
			}
		}
		l.printLines(lines)
		done := false
		switch view.State {
		case controller.StateCompleted:
			_, done = l.onGood(v)
			end = v
		case controller.StateRolledBack:
			if back != nil {
				// A poll that began before the rollback was signed may
				// still install the version: only polls that ended a
				// poll interval after it surely read the rollback.
				_, all := l.onGood(view.From)
				done = all && l.polledSince(back.Time.Add(l.cfg.Host.PollInterval.Duration))
			}
			end = view.From
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			row.Problems = append(row.Problems, fmt.Sprintf("not finished after %v (rollout %s)", l.cfg.Rollout.Timeout, view.State))
			if view.State == controller.StateRunning || view.State == controller.StatePaused || view.State == controller.StateHalted {
				if _, _, err := l.client.Act(ctx, l.cfg.Channel, controller.KindRollback, "ringfence-lab", "the lab's scenario timed out"); err == nil {
					l.tl.printf("  the lab rolled the rollout back by hand: the scenario timed out")
				}
			}
			break
		}
		if err := sleep(ctx, tick); err != nil {
			return row, err
		}
	}
	l.printLines(l.collect())
	l.summarise(&row, view, start, halt, end, want)
	row.Seconds = time.Since(began).Seconds()
	l.tl.printf("scenario %s: %s after %.0fs; %d of %d hosts on %d (GOOD)", id, row.Outcome, row.Seconds, row.Healthy, len(l.hosts), end)
	return row, nil
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
	switch d.Kind {
	case controller.KindStart, controller.KindWait:
		return ""
	case controller.KindAdvance:
		return fmt.Sprintf("  stage %s: %d of %d hosts healthy on %d -> advance to %s (%s)", stage(d.Stage-1), ev.Healthy, ev.StageHosts, v.To, stage(d.Stage), l.fleetOn(v.To))
	case controller.KindComplete:
		return fmt.Sprintf("  stage %s: %d of %d hosts healthy on %d -> completed (%s)", stage(d.Stage), ev.Healthy, ev.StageHosts, v.To, l.fleetOn(v.To))
	case controller.KindHalt:
		return fmt.Sprintf("  HALT in stage %s by the %s: %s", stage(d.Stage), d.Actor, shortReason(l.names(d.Reason)))
	case controller.KindRollback:
		return fmt.Sprintf("  ROLLBACK by the %s: %s (a signed plan)", d.Actor, l.names(d.Reason))
	default:
		return fmt.Sprintf("  %s in stage %s by %s: %s", d.Kind, stage(d.Stage), d.Actor, l.names(d.Reason))
	}
}

// fleetOn says how many hosts run version v now, by their own status.
func (l *lab) fleetOn(v uint32) string {
	trial, good := fmt.Sprintf("version %d (TRIAL)", v), fmt.Sprintf("version %d (GOOD)", v)
	nt, ng := 0, 0
	for _, h := range l.hosts {
		st, err := h.status()
		switch {
		case err != nil:
		case strings.HasSuffix(st.Running, good):
			ng++
		case strings.HasSuffix(st.Running, trial):
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
				}
				line = fmt.Sprintf("%s: agent crashed%s: %s", h.label(), while, ev.Detail)
			case evReverted:
				line = fmt.Sprintf("%s: boot guard reverted %d (%s), quarantined it", h.label(), ev.Version, ev.Detail)
			case evRejected:
				line = fmt.Sprintf("%s: rejected %d, its own %s says %s", h.label(), ev.Version, checkName(ev.Check), clip(ev.Detail, 140))
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

// summarise fills the row from the hosts' events of the scenario, their
// status now, and the server's decisions; it checks what the scenario
// expects.
func (l *lab) summarise(row *Row, view server.View, start controller.Decision, halt *controller.Decision, end uint32, want expect) {
	v := row.Version
	var firstFailure time.Time
	for _, h := range l.hosts {
		var loaded, crashed, reverted, rejected, recalled bool
		by := ""
		for _, ev := range h.events {
			if ev.scenario != row.seq {
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
	for _, kind := range []eventKind{evCrashed, evReverted, evRejected, evRecalled} {
		if c := l.shownCount(fmt.Sprintf("%d/%s", row.seq, kind)); c > maxShown {
			l.tl.printf("  (and %d more hosts %s; the table counts them all)", c-maxShown, kind)
		}
	}
	row.Healthy, _ = l.onGood(end)
	row.Outcome = view.State.String()
	if halt != nil {
		row.Halted = true
		row.HaltSeconds = halt.Time.Sub(start.Time).Seconds()
		row.HaltReason = l.names(halt.Reason)
		if !firstFailure.IsZero() {
			row.CrashToHaltSeconds = max(halt.Time.Sub(firstFailure).Seconds(), 0)
		}
		if view.State == controller.StateRolledBack {
			row.Outcome = "halted, rolled back"
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
	problem(row.Healthy == len(l.hosts), "%d of %d hosts ended on version %d (GOOD)", row.Healthy, len(l.hosts), end)
	if want == expectComplete {
		problem(view.State == controller.StateCompleted, "the rollout ended %s, not completed", view.State)
		problem(row.Loaded == len(l.hosts), "%d of %d hosts loaded %d", row.Loaded, len(l.hosts), v)
		problem(row.Crashed == 0, "%d hosts crashed on good content", row.Crashed)
		row.Notes = append(row.Notes, fmt.Sprintf("every stage baked and reported healthy: %d hosts on %d (GOOD)", row.Healthy, v))
		return
	}
	problem(halt != nil && view.State == controller.StateRolledBack, "the server did not halt and roll back (state %s)", view.State)
	problem(row.LoadedOutsideCanary == 0, "%d hosts outside the canary group loaded %d", row.LoadedOutsideCanary, v)
	if want == expectRejected {
		problem(row.Loaded == 0, "%d hosts activated %d, which their checks should refuse", row.Loaded, v)
		problem(row.Rejected > 0, "no host rejected %d", v)
		row.Notes = append(row.Notes, fmt.Sprintf("%d of %d canaries fetched %d and refused it: %s; nothing was activated, %d hosts outside the canary group never fetched it",
			row.Rejected, canaries, v, byText(row.RejectedBy), len(l.hosts)-canaries))
	} else {
		problem(row.Reverted > 0, "no host reverted %d", v)
		row.Notes = append(row.Notes, fmt.Sprintf("%d of %d canaries loaded %d before the halt; %d crashed and came back on %d by the boot guard alone, %d left it on the signed rollback; %d hosts outside the canary group never loaded it",
			row.Loaded, canaries, v, row.Reverted, end, row.Recalled, len(l.hosts)-canaries))
	}
	if halt != nil {
		n := fmt.Sprintf("halted %.1fs after the start", row.HaltSeconds)
		if row.CrashToHaltSeconds > 0 {
			n += fmt.Sprintf(", %.1fs after the first host failed", row.CrashToHaltSeconds)
		}
		row.Notes = append(row.Notes, n+": "+shortReason(row.HaltReason))
	}
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

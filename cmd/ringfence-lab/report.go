package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/internal/clock"
)

// Row is what one scenario did to the fleet. Counts are hosts.
type Row struct {
	// ID is the scenario's number ("2"); the good rollouts of scenario 1
	// are "1a", "1b", ... when there are several.
	ID       string `json:"id"`
	Scenario string `json:"scenario"`
	Channel  uint32 `json:"channel"`
	Version  uint32 `json:"version,omitempty"`
	// Outcome is what the rollout (or the publisher) ended in: completed,
	// halted and rolled back, refused by the publisher.
	Outcome string `json:"outcome"`
	// Loaded hosts had the version staged, activated as a trial and handed
	// to their agent's loader; LoadedOutsideCanary of them are not
	// canaries, LoadedLegacy of them run a 7.11 agent.
	Loaded              int `json:"loaded"`
	LoadedOutsideCanary int `json:"loaded_outside_canary"`
	LoadedLegacy        int `json:"loaded_legacy"`
	// Waited hosts had the version staged and waited for another channel's
	// trial to end before it went on trial (one trial at a time per host),
	// as the lab saw them between their polls.
	Waited int `json:"waited"`
	// Crashed hosts saw their agent die; Reverted ones were put back on
	// last-known-good by the boot guard (and quarantined the version).
	Crashed  int `json:"crashed"`
	Reverted int `json:"reverted"`
	// Rejected hosts refused the version in their own checks, RejectedBy
	// says which: "validation" or "preflight".
	Rejected   int            `json:"rejected"`
	RejectedBy map[string]int `json:"rejected_by,omitempty"`
	// Recalled hosts left the version because the signed rollback plan
	// denies it.
	Recalled int `json:"recalled"`
	// Healthy hosts ended the scenario on good content: the version they
	// should run, GOOD in the boot record, the agent running.
	Healthy int `json:"healthy"`
	Hosts   int `json:"hosts"`
	// Judged is how many treated hosts the server's health test judged
	// (each once, with its first health sample a health window after it
	// installed the version, while there were controls to compare with),
	// Unhealthy how many of them it found beyond the controls' limits: the
	// rollout's counts at its end.
	Judged    int64 `json:"judged"`
	Unhealthy int64 `json:"unhealthy"`
	// Health is what the health test saw when it halted the rollout
	// (scenario 6); nil when it did not halt it.
	Health *HealthHalt `json:"health_halt,omitempty"`
	// Halted is set when the server halted the rollout; HaltSeconds is from
	// the rollout's start decision to the halt decision (the server's
	// times), CrashToHaltSeconds from the first failure a host logged.
	Halted             bool    `json:"halted"`
	HaltSeconds        float64 `json:"halt_seconds,omitempty"`
	CrashToHaltSeconds float64 `json:"failure_to_halt_seconds,omitempty"`
	HaltReason         string  `json:"halt_reason,omitempty"`
	// RollbackBy is who rolled the rollout back: "gate" (at once, with
	// the halt) or "ringfence-lab" (scenario 4: the lab, as the operator,
	// once every legacy canary had shown what it does with the version).
	RollbackBy string `json:"rollback_by,omitempty"`
	// LegacyCanaries say what each legacy canary did with content that
	// crashes the 7.11 interpreter (scenarios 4 and 5a), by the preflight
	// it runs.
	LegacyCanaries []LegacyCanary `json:"legacy_canaries,omitempty"`
	// Seconds is how long the scenario took, settling included.
	Seconds float64 `json:"seconds"`
	// Notes say what the numbers mean; Problems what went against what the
	// scenario expects (any makes the lab fail).
	Notes    []string `json:"notes,omitempty"`
	Problems []string `json:"problems,omitempty"`
	// PublisherOnly rows (scenario 2) have no fleet counts.
	PublisherOnly bool `json:"publisher_only,omitempty"`

	seq int // the lab's running number of the scenario: its events' key
}

// HealthHalt is the server's health test at the halt it decided: the halt
// decision's evidence, and the rollout's statistics and limits then.
type HealthHalt struct {
	Stage string `json:"stage"` // the stage it halted in
	// Judged treated hosts since the start, Unhealthy of them beyond the
	// limits; P0 bounds a healthy host's chance of being found so, from
	// Controls with a health sample, ControlsBeyond of them beyond the
	// limits: (ControlsBeyond+1)/(Controls+1).
	Judged         int64   `json:"judged"`
	Unhealthy      int64   `json:"unhealthy"`
	P0             float64 `json:"p0"`
	Controls       int64   `json:"controls"`
	ControlsBeyond int64   `json:"controls_beyond"`
	// Statistic is the health test's (log10 of its likelihood ratio), which
	// reached Threshold; Reported and Silence are the other two tests'.
	Statistic float64 `json:"statistic"`
	Threshold float64 `json:"threshold"`
	Reported  float64 `json:"reported_statistic"`
	Silence   float64 `json:"silence_statistic"`
	// Limits are the ones the controls set at the halt.
	Limits *controller.HealthLimits `json:"limits,omitempty"`
}

// LegacyCanary is what one legacy canary (a 7.11 agent under a 7.12
// manifest) did with a version, as its daemon's journal and the channel's
// boot record say.
type LegacyCanary struct {
	Host string `json:"host"`
	// Preflight is the one it runs: "reference preflight" (against the
	// manifest) or "preflight by the installed agent".
	Preflight string `json:"preflight"`
	// Outcome is one of the outcome constants (or "something else"),
	// Evidence the journal's events and the boot record that say so.
	Outcome  string `json:"outcome"`
	Evidence string `json:"evidence"`
}

// What a legacy canary did with content that crashes its agent.
const (
	// OutcomeReverted: it installed the version, its agent crashed while
	// loading it, and the boot guard reverted it (load-crash): the boot
	// record holds it BAD, quarantined.
	OutcomeReverted = "crashed on load, reverted by the boot guard"
	// OutcomeRefused: its preflight refused the version (PREFLIGHT_CRASH);
	// it never installed it or put it on trial, and no slot of the channel
	// held it at any of the lab's looks nor at the end.
	OutcomeRefused = "refused in preflight, never staged"
	// OutcomeNotFetched: nothing at all: the rollback came before its poll.
	OutcomeNotFetched = "never fetched it (the rollback came first)"
	// OutcomeOther is anything else; Evidence says what.
	OutcomeOther = "something else"
)

// Report is the lab's result (--json prints it).
type Report struct {
	OK    bool `json:"ok"`
	Hosts int  `json:"hosts"`
	// Replicas is how many ringfence-server replicas ran on PostgreSQL
	// (--db), Servers says how (behind haproxy when several); both unset
	// for the single server of the default run.
	Replicas    int      `json:"replicas,omitempty"`
	Servers     string   `json:"servers,omitempty"`
	Canaries    []string `json:"canaries"`
	LegacyHosts []string `json:"legacy_hosts"`
	// AgentPreflightHosts preflight with their installed agent; every other
	// host with the reference preflight against its manifest.
	AgentPreflightHosts []string `json:"agent_preflight_hosts"`
	// Channels every host follows; GoodVersion is the first channel's last
	// good version, GoodVersions what every host must end on, per channel.
	Channels     []uint32          `json:"channels"`
	GoodVersion  uint32            `json:"good_version"`
	GoodVersions map[uint32]uint32 `json:"good_versions"`
	Seconds      float64           `json:"seconds"`
	Scenarios    []Row             `json:"scenarios"`
	// HostsWithoutGoodContent name the hosts that did not end on the good
	// version of every channel, GOOD, with the agent running, and what
	// they run.
	HostsWithoutGoodContent []string `json:"hosts_without_good_content"`
	Failures                []string `json:"failures,omitempty"`
	Work                    string   `json:"work,omitempty"`
	Dashboard               string   `json:"dashboard,omitempty"`
}

// column is one column of the final table.
type column struct {
	head string
	left bool
	cell func(Row) string
}

func count(r Row, n int) string {
	if r.PublisherOnly {
		return "-"
	}
	return fmt.Sprint(n)
}

var columns = []column{
	{"scenario", true, func(r Row) string { return r.ID + " " + r.Scenario }},
	{"channel", false, func(r Row) string { return fmt.Sprint(r.Channel) }},
	{"loaded", false, func(r Row) string { return count(r, r.Loaded) }},
	{"waited", false, func(r Row) string { return count(r, r.Waited) }},
	{"crashed", false, func(r Row) string { return count(r, r.Crashed) }},
	{"reverted", false, func(r Row) string { return count(r, r.Reverted) }},
	{"rejected", false, func(r Row) string { return count(r, r.Rejected) }},
	{"recalled", false, func(r Row) string { return count(r, r.Recalled) }},
	{"healthy", false, func(r Row) string {
		if r.PublisherOnly {
			return "-"
		}
		return fmt.Sprintf("%d/%d", r.Healthy, r.Hosts)
	}},
	{"unhealthy", false, func(r Row) string {
		if r.PublisherOnly || r.Judged == 0 {
			return "-"
		}
		return fmt.Sprintf("%d/%d", r.Unhealthy, r.Judged)
	}},
	{"halt", false, func(r Row) string {
		if !r.Halted {
			return "-"
		}
		return fmt.Sprintf("%.1fs", r.HaltSeconds)
	}},
	{"outcome", true, func(r Row) string { return r.Outcome }},
}

// Table renders the rows as the final table: one line per scenario, the
// scenario and outcome left-aligned, the counts right-aligned.
func Table(rows []Row) string {
	cells := make([][]string, len(rows)+1)
	width := make([]int, len(columns))
	for i, c := range columns {
		cells[0] = append(cells[0], c.head)
		width[i] = len(c.head)
	}
	for j, r := range rows {
		for i, c := range columns {
			s := c.cell(r)
			cells[j+1] = append(cells[j+1], s)
			width[i] = max(width[i], len(s))
		}
	}
	var b strings.Builder
	for _, line := range cells {
		var parts []string
		for i, s := range line {
			switch {
			case i == len(line)-1:
				parts = append(parts, s) // no trailing padding
			case columns[i].left:
				parts = append(parts, fmt.Sprintf("%-*s", width[i], s))
			default:
				parts = append(parts, fmt.Sprintf("%*s", width[i], s))
			}
		}
		b.WriteString(strings.Join(parts, "  "))
		b.WriteByte('\n')
	}
	return b.String()
}

// WriteText writes the table, each scenario's notes and problems, and the
// verdict.
func (r Report) WriteText(w io.Writer) {
	fmt.Fprintln(w)
	if r.Servers != "" {
		fmt.Fprintf(w, "server: %s\n\n", r.Servers)
	}
	fmt.Fprint(w, Table(r.Scenarios))
	fmt.Fprintln(w)
	for _, row := range r.Scenarios {
		for _, n := range row.Notes {
			fmt.Fprintf(w, "%s: %s\n", row.ID, n)
		}
		for _, p := range row.Problems {
			fmt.Fprintf(w, "%s: PROBLEM: %s\n", row.ID, p)
		}
	}
	for _, f := range r.Failures {
		fmt.Fprintf(w, "FAILED: %s\n", f)
	}
	if r.OK {
		fmt.Fprintf(w, "ok: all %d hosts run %s with their agent up; %.0fs in all\n", r.Hosts, r.goodText(), r.Seconds)
	} else if len(r.HostsWithoutGoodContent) > 0 {
		fmt.Fprintf(w, "FAILED: %d hosts without good content: %s\n", len(r.HostsWithoutGoodContent), strings.Join(r.HostsWithoutGoodContent, "; "))
	}
}

// goodText says what every host runs at the end: "channel 291 version 1002
// and channel 292 version 2001, GOOD" (by GoodVersion without
// GoodVersions).
func (r Report) goodText() string {
	if len(r.GoodVersions) == 0 {
		return fmt.Sprintf("version %d (GOOD)", r.GoodVersion)
	}
	var parts []string
	for _, ch := range slices.Sorted(maps.Keys(r.GoodVersions)) {
		parts = append(parts, fmt.Sprintf("channel %d version %d", ch, r.GoodVersions[ch]))
	}
	return strings.Join(parts, " and ") + ", GOOD,"
}

// WriteJSON writes the report as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// timeline prints one line per step, stamped with the time since the lab
// started.
type timeline struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	clock clock.Clock
}

func (t *timeline) printf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "[%6.1fs] %s\n", t.clock.Now().Sub(t.start).Seconds(), fmt.Sprintf(format, args...))
}

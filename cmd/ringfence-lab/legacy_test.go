package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/server"
)

// TestHostConfigPreflight: every host's manifest says 7.12; a legacy host's
// agent is the 7.11 build; a host with preflight by the installed agent
// preflights with that agent's own command line plus --preflight (the
// daemon appends the file), every other host with the reference preflight
// against the manifest. ringfenced accepts each configuration.
func TestHostConfigPreflight(t *testing.T) {
	dir := t.TempDir()
	trusted := filepath.Join(dir, "root.json")
	require.NoError(t, os.WriteFile(trusted, []byte("{}"), 0o644))
	token := filepath.Join(dir, "enrolment.token")
	require.NoError(t, os.WriteFile(token, []byte("token\n"), 0o600))
	testdata, err := filepath.Abs(filepath.Join("..", "..", "testdata"))
	require.NoError(t, err)
	l := &lab{cfg: DefaultConfig(), opts: Options{Bin: "/opt/lab/bin", Testdata: testdata}, url: "http://127.0.0.1:8080"}
	caps := func(v string) string { return filepath.Join(testdata, "capabilities", "sensor-"+v+".json") }
	rfd := "/opt/lab/bin/ringfenced"
	tests := []struct {
		spec             HostSpec
		label            string
		agent, preflight []string
	}{
		{HostSpec{Name: "h03", Canary: true}, "h03 (canary)",
			[]string{rfd, "agent", "--capabilities", caps("7.12")},
			[]string{rfd, "sensor", "preflight", "--capabilities", caps("7.12")}},
		{HostSpec{Name: "h01", Canary: true, Legacy: true}, "h01 (canary, 7.11 agent, reference preflight)",
			[]string{rfd, "agent", "--capabilities", caps("7.11")},
			[]string{rfd, "sensor", "preflight", "--capabilities", caps("7.12")}},
		{HostSpec{Name: "h02", Canary: true, Legacy: true, AgentPreflight: true}, "h02 (canary, 7.11 agent, preflight by the installed agent)",
			[]string{rfd, "agent", "--capabilities", caps("7.11")},
			[]string{rfd, "agent", "--capabilities", caps("7.11"), "--preflight"}},
		{HostSpec{Name: "h06", Legacy: true}, "h06 (7.11 agent, reference preflight)",
			[]string{rfd, "agent", "--capabilities", caps("7.11")},
			[]string{rfd, "sensor", "preflight", "--capabilities", caps("7.12")}},
	}
	for _, tt := range tests {
		t.Run(tt.spec.Name, func(t *testing.T) {
			h := &host{HostSpec: tt.spec, root: filepath.Join(dir, tt.spec.Name, "root")}
			require.Equal(t, tt.label, h.label())
			b, err := l.renderHostConfig(h, trusted, token)
			require.NoError(t, err)
			c, err := hostconfig.Parse(b, dir)
			require.NoError(t, err, "%s", b)
			require.Equal(t, caps("7.12"), c.Agent.Capabilities, "every manifest says 7.12")
			require.Equal(t, tt.agent, c.Agent.Command)
			require.Equal(t, tt.preflight, c.Agent.PreflightCommand)
			require.Equal(t, tt.spec.AgentPreflight, strings.Contains(string(b), "# Its preflight runs the installed agent"))
		})
	}
}

// TestLegacyOutcome: what a legacy canary did with a version, from its
// journal's events of the scenario, the lab's looks at its boot record and
// the record at the end; anything short of the whole story is not the
// outcome.
func TestLegacyOutcome(t *testing.T) {
	const seq, ch, v = 5, 291, 1004
	ev := func(k eventKind, f func(*hostEvent)) scenarioEvent {
		e := hostEvent{Kind: k, Channel: ch, Version: v, Time: t0}
		if f != nil {
			f(&e)
		}
		return scenarioEvent{scenario: seq, hostEvent: e}
	}
	installed := ev(evInstalled, nil)
	crashed := ev(evCrashed, func(e *hostEvent) { e.During = "load" })
	reverted := ev(evReverted, func(e *hostEvent) { e.Reason = "load-crash" })
	refused := ev(evRejected, func(e *hostEvent) { e.Check, e.Codes = checkPreflight, []string{"PREFLIGHT_CRASH"} })
	record := func(b bootguard.Entry) bootguard.Record {
		var r bootguard.Record
		r.Active, r.Slots[0], r.Slots[1] = bootguard.SlotA, bootguard.Entry{Channel: ch, Version: 1002, State: bootguard.StateGood}, b
		return r
	}
	bad := record(bootguard.Entry{Channel: ch, Version: v, State: bootguard.StateBad, Reason: bootguard.ReasonLoadCrash})
	clean := record(bootguard.Entry{Channel: ch, Version: 1001, State: bootguard.StateGood})
	tests := []struct {
		name         string
		evs          []scenarioEvent
		slotted      bool
		rec          bootguard.Record
		want, reason string
	}{
		{"crashed on load, reverted", []scenarioEvent{installed, crashed, reverted}, true, bad, OutcomeReverted,
			"journal: installed, crashed while loading, reverted (load-crash); boot record: slot b holds 1004 BAD (load-crash)"},
		{"refused in preflight", []scenarioEvent{refused, refused}, false, clean, OutcomeRefused,
			"journal: rejected-preflight (PREFLIGHT_CRASH), never installed; boot record: no slot holds 1004, nor did one at any of the lab's looks"},
		{"nothing", nil, false, clean, OutcomeNotFetched,
			"journal: nothing about it; boot record: no slot holds 1004, nor did one at any of the lab's looks"},
		{"another scenario's and another version's events", []scenarioEvent{
			{scenario: seq - 1, hostEvent: refused.hostEvent},
			ev(evRejected, func(e *hostEvent) {
				e.Version, e.Check, e.Codes = 1005, checkValidation, []string{"FIELD_NOT_SUPPLIED"}
			})},
			false, clean, OutcomeNotFetched, ""},
		{"the revert without its record", []scenarioEvent{installed, crashed, reverted}, true, clean, OutcomeOther,
			"boot record: no slot holds 1004, though one did during the scenario"},
		{"reverted for another reason", []scenarioEvent{installed, ev(evCrashed, func(e *hostEvent) { e.During = "run" }),
			ev(evReverted, func(e *hostEvent) { e.Reason = "health-failed" })}, true,
			record(bootguard.Entry{Channel: ch, Version: v, State: bootguard.StateBad, Reason: bootguard.ReasonHealthFailed}), OutcomeOther,
			"journal: installed, crashed while running, reverted (health-failed)"},
		{"the agent's preflight let it through", []scenarioEvent{installed, ev(evTrial, nil), ev(evHealthy, nil)}, true,
			record(bootguard.Entry{Channel: ch, Version: v, State: bootguard.StateGood}), OutcomeOther,
			"journal: installed, trial-started, healthy; boot record: slot b holds 1004 GOOD"},
		{"refused, but staged first", []scenarioEvent{refused}, true, clean, OutcomeOther, "though one did during the scenario"},
		{"refused, and in a slot now", []scenarioEvent{refused}, false,
			record(bootguard.Entry{Channel: ch, Version: v, State: bootguard.StateStaged}), OutcomeOther, "slot b holds 1004 STAGED"},
		{"refused by the validator", []scenarioEvent{ev(evRejected, func(e *hostEvent) { e.Check, e.Codes = checkValidation, []string{"FIELD_NOT_SUPPLIED"} })},
			false, clean, OutcomeOther, "journal: rejected-validation (FIELD_NOT_SUPPLIED), never installed"},
		{"refused in preflight, not a crash", []scenarioEvent{ev(evRejected, func(e *hostEvent) { e.Check, e.Codes = checkPreflight, []string{"PREFLIGHT_TIMEOUT"} })},
			false, clean, OutcomeOther, "rejected-preflight (PREFLIGHT_TIMEOUT)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, evidence := legacyOutcome(tt.evs, seq, ch, v, tt.slotted, tt.rec)
			require.Equal(t, tt.want, got, evidence)
			require.Contains(t, evidence, tt.reason)
		})
	}
}

// TestDecisionActor: the gate's decisions say "by the gate", the lab's own
// "by ringfence-lab".
func TestDecisionActor(t *testing.T) {
	l := &lab{byID: map[string]*host{}}
	v := server.View{}
	require.Equal(t, "  ROLLBACK by the gate: automatic after the halt (a signed plan)",
		l.decisionLine(v, controller.Decision{Kind: controller.KindRollback, Actor: "gate", Reason: "automatic after the halt"}))
	require.Equal(t, "  ROLLBACK by ringfence-lab: once the legacy canaries had shown what they do with 1004 (a signed plan)",
		l.decisionLine(v, controller.Decision{Kind: controller.KindRollback, Actor: labActor, Reason: "once the legacy canaries had shown what they do with 1004"}))
}

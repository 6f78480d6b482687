package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/internal/clock"
)

func sampleRows() []Row {
	return []Row{
		{ID: "1a", Scenario: "good 1001 (first content)", Channel: 291, Version: 1001, Outcome: "completed", Loaded: 50, Healthy: 50, Hosts: 50},
		{ID: "1b", Scenario: "good 1002", Channel: 291, Version: 1002, Outcome: "completed", Loaded: 50, Healthy: 50, Hosts: 50, Judged: 27, Unhealthy: 1},
		{ID: "2", Scenario: "cf291 at the publisher", Channel: 291, Version: 1004, Outcome: "refused by the publisher", PublisherOnly: true, Healthy: 50, Hosts: 50},
		{ID: "3", Scenario: "checks bypassed 1005", Channel: 291, Version: 1005, Outcome: "halted, rolled back", Rejected: 2,
			RejectedBy: map[string]int{"validation": 2}, Healthy: 50, Hosts: 50, Halted: true, HaltSeconds: 0.94},
		{ID: "4", Scenario: "cf291 on 7.11 agents 1004", Channel: 291, Version: 1004, Outcome: "halted, rolled back", Loaded: 5, Crashed: 1,
			Reverted: 1, Recalled: 4, Healthy: 49, Hosts: 50, Halted: true, HaltSeconds: 12.25},
		{ID: "5a", Scenario: "two at once: cf291 again 1006", Channel: 291, Version: 1006, Outcome: "halted, rolled back", Loaded: 5, Crashed: 1,
			Reverted: 1, Recalled: 4, Healthy: 50, Hosts: 50, Halted: true, HaltSeconds: 4.5},
		{ID: "5b", Scenario: "two at once: good 2001 (first content)", Channel: 292, Version: 2001, Outcome: "completed", Loaded: 50, Waited: 5,
			Healthy: 50, Hosts: 50},
		{ID: "6", Scenario: "costly on 7.11 agents 1007", Channel: 291, Version: 1007, Outcome: "halted, rolled back", Loaded: 27, LoadedOutsideCanary: 22,
			LoadedLegacy: 14, Recalled: 27, Healthy: 50, Hosts: 50, Halted: true, HaltSeconds: 41.03, Judged: 25, Unhealthy: 12,
			Health: &HealthHalt{Stage: "60%", Judged: 25, Unhealthy: 12, P0: 1.0 / 24, Controls: 23, Statistic: 3.61, Threshold: 3.48,
				Limits: &controller.HealthLimits{CPU: 0.0195, RSS: 26214400, Latency: 60, Events: 76.8, Controls: 23}}},
	}
}

func TestTable(t *testing.T) {
	want := `scenario                                   channel  loaded  waited  crashed  reverted  rejected  recalled  healthy  unhealthy   halt  outcome
1a good 1001 (first content)                   291      50       0        0         0         0         0    50/50          -      -  completed
1b good 1002                                   291      50       0        0         0         0         0    50/50       1/27      -  completed
2 cf291 at the publisher                       291       -       -        -         -         -         -        -          -      -  refused by the publisher
3 checks bypassed 1005                         291       0       0        0         0         2         0    50/50          -   0.9s  halted, rolled back
4 cf291 on 7.11 agents 1004                    291       5       0        1         1         0         4    49/50          -  12.2s  halted, rolled back
5a two at once: cf291 again 1006               291       5       0        1         1         0         4    50/50          -   4.5s  halted, rolled back
5b two at once: good 2001 (first content)      292      50       5        0         0         0         0    50/50          -      -  completed
6 costly on 7.11 agents 1007                   291      27       0        0         0         0        27    50/50      12/25  41.0s  halted, rolled back
`
	require.Equal(t, want, Table(sampleRows()))
	require.Equal(t, "scenario  channel  loaded  waited  crashed  reverted  rejected  recalled  healthy  unhealthy  halt  outcome\n", Table(nil), "a header alone")
}

func TestReportText(t *testing.T) {
	rows := sampleRows()
	rows[4].Notes = []string{"halted 12.2s after the start"}
	rows[4].Problems = []string{"49 of 50 hosts ended on version 1002 (GOOD)"}
	r := Report{OK: false, Hosts: 50, GoodVersion: 1002, Scenarios: rows,
		Failures:                []string{"scenario 4: 49 of 50 hosts ended on version 1002 (GOOD)"},
		HostsWithoutGoodContent: []string{"h02: channel 291 version 1004 (GOOD); channel 292 version 2001 (GOOD); agent running"}}
	var b bytes.Buffer
	r.WriteText(&b)
	out := b.String()
	require.Contains(t, out, Table(rows))
	require.Contains(t, out, "4: halted 12.2s after the start\n")
	require.Contains(t, out, "4: PROBLEM: 49 of 50 hosts ended on version 1002 (GOOD)\n")
	require.Contains(t, out, "FAILED: 1 hosts without good content: h02: channel 291 version 1004 (GOOD); channel 292 version 2001 (GOOD); agent running\n")
	require.NotContains(t, out, "ok:")

	r = Report{OK: true, Hosts: 50, GoodVersion: 1002, GoodVersions: map[uint32]uint32{292: 2001, 291: 1002}, Seconds: 197.4, Scenarios: rows[:1]}
	b.Reset()
	r.WriteText(&b)
	require.True(t, strings.HasSuffix(b.String(), "ok: all 50 hosts run channel 291 version 1002 and channel 292 version 2001, GOOD, with their agent up; 197s in all\n"), b.String())
}

// TestReportJSON pins the field names scripts read.
func TestReportJSON(t *testing.T) {
	r := Report{OK: true, Hosts: 50, Canaries: []string{"h01"}, LegacyHosts: []string{"h01"}, Channels: []uint32{291, 292}, GoodVersion: 1002,
		GoodVersions: map[uint32]uint32{291: 1002, 292: 2001}, Scenarios: sampleRows(), HostsWithoutGoodContent: []string{}}
	var b bytes.Buffer
	require.NoError(t, r.WriteJSON(&b))
	var m map[string]any
	require.NoError(t, json.Unmarshal(b.Bytes(), &m))
	for _, k := range []string{"ok", "hosts", "canaries", "legacy_hosts", "channels", "good_version", "good_versions", "seconds", "scenarios", "hosts_without_good_content"} {
		require.Contains(t, m, k)
	}
	row := m["scenarios"].([]any)[3].(map[string]any)
	for _, k := range []string{"id", "scenario", "channel", "version", "outcome", "loaded", "loaded_outside_canary", "loaded_legacy", "waited", "crashed", "reverted",
		"rejected", "rejected_by", "recalled", "healthy", "hosts", "judged", "unhealthy", "halted", "halt_seconds"} {
		require.Contains(t, row, k)
	}
	require.NotContains(t, row, "health_halt", "only a halt on the health test has one")
	health := m["scenarios"].([]any)[7].(map[string]any)["health_halt"].(map[string]any)
	for _, k := range []string{"stage", "judged", "unhealthy", "p0", "controls", "controls_beyond", "statistic", "threshold", "reported_statistic", "silence_statistic", "limits"} {
		require.Contains(t, health, k)
	}
	var back Report
	require.NoError(t, json.Unmarshal(b.Bytes(), &back))
	require.Equal(t, r.Scenarios[3].RejectedBy, back.Scenarios[3].RejectedBy)
	require.Equal(t, r.Scenarios[7].Health, back.Scenarios[7].Health)
	require.Equal(t, r.GoodVersions, back.GoodVersions)
	require.Equal(t, map[string]any{"291": 1002.0, "292": 2001.0}, m["good_versions"], "by channel")
}

func TestTimeline(t *testing.T) {
	var b bytes.Buffer
	start := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clk := clock.NewFake(start.Add(12345 * time.Millisecond))
	tl := &timeline{w: &b, start: start, clock: clk}
	tl.printf("scenario %s: rollout %d started", "1a", 1001)
	clk.Set(start.Add(125 * time.Second))
	tl.printf("  stage canary")
	require.Equal(t, "[  12.3s] scenario 1a: rollout 1001 started\n[ 125.0s]   stage canary\n", b.String())
}

func TestShortReason(t *testing.T) {
	long := "rejected-validation: installer: content failed validation: validator: rejected: FIELD_NOT_SUPPLIED: instance 1, field 22: template type IPC (id 7) declares 22 fields but sensor 7.12 supplies 21 of version 1005 in the canary group (host h02)"
	require.Equal(t, "rejected-validation of version 1005 in the canary group (host h02)", shortReason(long))
	short := "reverted: load-crash of version 1004 in the canary group (host h01)"
	require.Equal(t, short, shortReason(short))
}

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/testbin"
	"github.com/ringfence/ringfence/wire"
)

// labTestConfig is the lab scaled down for go test: 20 hosts, 3 canaries, 2
// of them legacy (h01 with the reference preflight, h02 with preflight by
// its installed agent), one good version, short windows. The hosts' health
// window (6 s) still outlasts the longest start-to-halt path here (a poll
// within 2 s, the crash, a 200 ms restart, a 1 s telemetry flush), so no
// canary marks the bad version good before the halt.
//
// Scenario 6 halts on the health test alone, whose evidence is the 7.11
// agents judged unhealthy among the treated hosts, each worth at most
// about a factor (controls + 1): a small fleet needs most of its hosts
// legacy (90%: all but h03 and h20) and a stage more (75%). With 20 hosts so,
// a simulation of the judgements (TestHealthEvidence) halts nearly every
// time (about 1 run in 1,000 reaches 100% first, where no control is left
// to compare with).
// The timeout covers scenario 5's good rollout, whose canaries wait for the
// bad version's trial to end first, through five stages (about 50 s).
const labTestConfig = `
hosts = 20
canaries = 3
legacy_percent = 90
legacy_canaries = 2
agent_preflight_canaries = 1
channels = [291, 292]

[host]
poll_interval = "1s"
poll_jitter = "1s"
health_window = "6s"
restart_delay = "200ms"
telemetry_interval = "1s"

[server]
eval_interval = "500ms"

[rollout]
health_window = "6s"
grace = "30s"
silence = "30s"
timeout = "90s"

[[rollout.stages]]
name = "canary"
canary = true
bake = "2s"

[[rollout.stages]]
name = "20%"
percent = 20
bake = "2s"

[[rollout.stages]]
name = "50%"
percent = 50
bake = "2s"

[[rollout.stages]]
name = "75%"
percent = 75
bake = "2s"

[[rollout.stages]]
name = "100%"
percent = 100

[content]
good = ["good-ipc-1001"]
cf291 = "cf291-shape"
bypassed = "cf291-field22"
second = "good-ipc-1001"
second_version = 2001
costly = "costly-glob"
`

// TestLab runs the whole lab, scaled down, against freshly built binaries:
// real daemons following two channels, the real server, the six scenarios.
// It checks the report: every host ends on good content on both channels,
// the publisher refuses cf291 against 7.11, the bypassed content is refused
// by the hosts' own checks and nothing is activated, cf291 crashes the
// legacy canary with the reference preflight, which reverts by itself,
// while the one with preflight by its installed agent refuses it before
// activation, the server halts and rolls back, and no host outside the
// canary group ever loads it; and with two rollouts at once, the bad one on
// 291 halts alone while 292's completes, each host taking 292's version
// only once 291's trial ended; and content that passes every check and
// crashes nothing but costs the 7.11 agents dear is halted by the server's
// health test alone and rolled back. The journals and boot records on disk
// back the legacy canaries' outcomes.
func TestLab(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and 20 daemons for about 130 s")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the lab stops its children with SIGINT and a parent-death signal: Linux")
	}
	runLab(t)
}

// runLab runs the lab scaled down (labTestConfig) with extra flags and
// checks its report, the journals and the boot records as TestLab says;
// it returns the report and the timeline.
func runLab(t *testing.T, extra ...string) (Report, string) {
	t.Helper()
	bin := testbin.Build(t, "github.com/ringfence/ringfence/cmd/ringfence", "github.com/ringfence/ringfence/cmd/ringfenced",
		"github.com/ringfence/ringfence/cmd/ringfence-server")
	cfgPath := filepath.Join(t.TempDir(), "lab.toml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(labTestConfig), 0o644))
	work := filepath.Join(t.TempDir(), "work")

	var stdout, stderr bytes.Buffer
	args := []string{"--config", cfgPath, "--bin", bin, "--testdata", filepath.Join("..", "..", "testdata"), "--work", work, "--json"}
	code := run(append(args, extra...), &stdout, &stderr)
	t.Logf("timeline:\n%s", stderr.String())
	var rep Report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), "stdout: %s", stdout.String())
	require.Equal(t, 0, code, "failures: %v; hosts: %v", rep.Failures, rep.HostsWithoutGoodContent)
	require.True(t, rep.OK)
	require.Empty(t, rep.HostsWithoutGoodContent, "every host ends on good content")
	require.Equal(t, uint32(1001), rep.GoodVersion)
	require.Equal(t, map[uint32]uint32{291: 1001, 292: 2001}, rep.GoodVersions)
	require.Equal(t, []string{"h01", "h02", "h03"}, rep.Canaries)
	require.Equal(t, []string{"h01", "h02", "h04", "h05", "h06", "h07", "h08", "h09", "h10", "h11", "h12", "h13", "h14", "h15", "h16", "h17", "h18", "h19"},
		rep.LegacyHosts)
	require.Equal(t, []string{"h02"}, rep.AgentPreflightHosts)
	require.Contains(t, stderr.String(), "h01 (canary, 7.11 agent, reference preflight)")
	require.Contains(t, stderr.String(), "h02 (canary, 7.11 agent, preflight by the installed agent)")

	rows := map[string]Row{}
	for _, r := range rep.Scenarios {
		rows[r.ID] = r
		require.Empty(t, r.Problems, "scenario %s", r.ID)
	}
	require.Len(t, rows, 7)

	good := rows["1"]
	require.Equal(t, "completed", good.Outcome)
	require.Equal(t, 20, good.Loaded)
	require.Equal(t, 20, good.Healthy)
	require.Zero(t, good.Crashed)
	require.False(t, good.Halted)

	pub := rows["2"]
	require.True(t, pub.PublisherOnly)
	require.Equal(t, "refused by the publisher", pub.Outcome)
	require.Contains(t, stderr.String(), "FIELD_NOT_SUPPLIED: instance 1, field 21: template type IPC (id 7) declares 21 fields but sensor 7.11 supplies 20")

	bypassed := rows["3"]
	require.Equal(t, uint32(1005), bypassed.Version)
	require.True(t, bypassed.Halted)
	require.Equal(t, "halted, rolled back", bypassed.Outcome)
	require.Zero(t, bypassed.Loaded, "nothing was activated")
	require.Positive(t, bypassed.Rejected)
	require.Equal(t, bypassed.Rejected, bypassed.RejectedBy["validation"], "the hosts' validators refuse it before preflight runs")
	require.Equal(t, 20, bypassed.Healthy)
	require.Contains(t, bypassed.HaltReason, "rejected-validation")

	// Scenario 4: both legacy canaries, whichever reported first (the
	// lab holds the rollback until both have shown what they do).
	crash := rows["4"]
	require.Equal(t, uint32(1004), crash.Version)
	require.True(t, crash.Halted)
	require.Equal(t, "halted, rolled back", crash.Outcome)
	require.Equal(t, "ringfence-lab", crash.RollbackBy, "held after the halt, rolled back by the lab")
	require.Zero(t, crash.LoadedOutsideCanary, "hosts outside the canary group never load it")
	require.GreaterOrEqual(t, crash.Crashed, 1)
	require.Equal(t, 1, crash.Reverted, "the legacy canary with the reference preflight reverts by itself")
	require.Equal(t, 1, crash.Rejected, "the legacy canary with preflight by its installed agent refuses it")
	require.Equal(t, map[string]int{"preflight": 1}, crash.RejectedBy)
	require.LessOrEqual(t, crash.Loaded, 2, "h02 never loaded it")
	haltedBy(t, crash.HaltReason, 1004)
	require.Positive(t, crash.HaltSeconds)
	require.Equal(t, 20, crash.Healthy)
	require.Equal(t, []LegacyCanary{
		{Host: "h01", Preflight: "reference preflight", Outcome: OutcomeReverted},
		{Host: "h02", Preflight: "preflight by the installed agent", Outcome: OutcomeRefused},
	}, withoutEvidence(crash.LegacyCanaries), "%+v", crash.LegacyCanaries)

	// Scenario 5: both at once. 291's bad version halts in the canary group
	// as in scenario 4; 292's first content completes on every host.
	bad, second := rows["5a"], rows["5b"]
	require.Equal(t, uint32(291), bad.Channel)
	require.Equal(t, uint32(1006), bad.Version, "cf291 again, at the version after all the others")
	require.Equal(t, "halted, rolled back", bad.Outcome)
	require.Equal(t, "gate", bad.RollbackBy, "rolled back at once by the gate")
	require.Zero(t, bad.LoadedOutsideCanary)
	// The first legacy canary's report halts and rolls back at once: the
	// other may never fetch 1006, but if it does, it does what it did with
	// 1004.
	haltedBy(t, bad.HaltReason, 1006)
	require.LessOrEqual(t, bad.Reverted, 1)
	require.LessOrEqual(t, bad.Rejected, 1)
	require.Positive(t, bad.Reverted+bad.Rejected)
	require.Len(t, bad.LegacyCanaries, 2)
	for i, want := range []string{OutcomeReverted, OutcomeRefused} {
		require.Contains(t, []string{want, OutcomeNotFetched}, bad.LegacyCanaries[i].Outcome, "%+v", bad.LegacyCanaries[i])
	}
	require.Equal(t, 20, bad.Healthy, "every host back on 1001")
	require.Equal(t, uint32(292), second.Channel)
	require.Equal(t, uint32(2001), second.Version)
	require.Equal(t, "completed", second.Outcome)
	require.False(t, second.Halted, "291's halt does not touch 292")
	require.Equal(t, 20, second.Loaded)
	require.Zero(t, second.Crashed, "the legacy canary's crash is 291's")
	require.Equal(t, 20, second.Healthy)
	require.LessOrEqual(t, second.Waited, 3, "only canaries had 291's trial to wait for")

	// Scenario 6: the gate halts on the agents' health alone, nothing
	// else failed, and it rolls back at once.
	costly := rows["6"]
	require.Equal(t, uint32(291), costly.Channel)
	require.Equal(t, uint32(1007), costly.Version)
	require.Equal(t, "halted, rolled back", costly.Outcome)
	require.Contains(t, costly.HaltReason, "the agents' health")
	require.Equal(t, "gate", costly.RollbackBy, "rolled back at once by the gate")
	require.Zero(t, costly.Crashed, "nothing crashes on it")
	require.Zero(t, costly.Reverted)
	require.Zero(t, costly.Rejected, "every check passes it, h02's preflight by its 7.11 agent included")
	require.GreaterOrEqual(t, costly.Loaded, 3, "every canary at least")
	require.Positive(t, costly.LoadedLegacy)
	require.Positive(t, costly.Recalled, "the hosts on 1007 left it on the signed rollback")
	require.Equal(t, 20, costly.Healthy, "every host back on 1001")
	hh := costly.Health
	require.NotNil(t, hh, "the halt's health evidence")
	require.GreaterOrEqual(t, hh.Statistic, hh.Threshold)
	require.Less(t, hh.Reported, hh.Threshold, "no host reported a failure")
	require.Positive(t, hh.Unhealthy)
	require.LessOrEqual(t, hh.Unhealthy, hh.Judged)
	require.Positive(t, hh.Controls, "judged against controls")
	require.NotNil(t, hh.Limits)
	require.Equal(t, hh.Judged, costly.Judged)
	require.Equal(t, hh.Unhealthy, costly.Unhealthy)
	require.Contains(t, stderr.String(), "health test: ")
	unhealthy := columns[slices.IndexFunc(columns, func(c column) bool { return c.head == "unhealthy" })]
	require.Equal(t, "-", unhealthy.cell(pub))
	require.Equal(t, fmt.Sprintf("%d/%d", hh.Unhealthy, hh.Judged), unhealthy.cell(costly), "the table's unhealthy column")

	// The journals back the report: no non-canary daemon ever installed
	// 1004, 1005 or 1006; every host installed 2001 on channel 292, and a
	// canary that took 1006 took 2001 only after 1006's trial ended (one
	// trial at a time); no host crashed on 1007, reverted it for a reason
	// of its own or refused it, and h02 installed it (its 7.11 agent's
	// preflight passed it).
	legacyOnDisk(t, work)
	cfg, err := ParseConfig([]byte(labTestConfig))
	require.NoError(t, err)
	h02took1007 := false
	for _, spec := range cfg.Fleet() {
		h := spec.Name
		evs, err := daemon.ReadJournal(filepath.Join(work, "hosts", h, "root"))
		require.NoError(t, err)
		require.NotEmpty(t, evs, h)
		took, left, took2001 := -1, -1, -1 // the indexes of 1006 installed, 1006 left, 2001 installed
		for i, ev := range evs {
			switch {
			case ev.Version == 1007:
				require.NotContains(t, []wire.EventKind{wire.EventSensorCrashed, wire.EventRejectedValidation, wire.EventRejectedPreflight}, ev.Kind, "%s: %+v", h, ev)
				if ev.Kind == wire.EventReverted {
					require.Equal(t, bootguard.ReasonManual.String(), ev.Reason, "%s left 1007 only on the rollback: %+v", h, ev)
				}
				h02took1007 = h02took1007 || h == "h02" && ev.Kind == wire.EventInstalled
			case ev.Kind == wire.EventInstalled && ev.Channel == 292:
				require.Equal(t, uint32(2001), ev.Version, h)
				took2001 = i
			case ev.Kind == wire.EventInstalled && (h >= "h04" || h == "h02"):
				require.NotContains(t, []uint32{1004, 1005, 1006}, ev.Version, h)
			case ev.Kind == wire.EventInstalled && ev.Version == 1006:
				took = i
			case ev.Kind == wire.EventReverted && ev.Channel == 291 && ev.Version == 1006:
				left = i
			case ev.Kind == wire.EventReverted:
				require.NotEqual(t, uint32(292), ev.Channel, "%s: nothing of 292 was reverted", h)
			}
		}
		require.GreaterOrEqual(t, took2001, 0, "%s installed 2001", h)
		if took >= 0 {
			require.Greater(t, left, took, "%s left 1006", h)
			require.Greater(t, took2001, left, "%s: 2001 went on trial after 1006's trial ended", h)
		}
	}
	require.True(t, h02took1007, "h02's preflight by its installed 7.11 agent passed 1007")
	// Every process is gone.
	out, _ := exec.Command("pgrep", "-f", work).CombinedOutput()
	require.Empty(t, strings.TrimSpace(string(out)), "processes left running")
	return rep, stderr.String()
}

// haltedBy checks a cf291 rollout's halt: on the report of the first
// legacy canary, whichever it was: h01's revert (load-crash) or h02's
// refusal in preflight.
func haltedBy(t *testing.T, reason string, v uint32) {
	t.Helper()
	byGuard := fmt.Sprintf("reverted: load-crash of version %d in the canary group (host h01)", v)
	byPreflight := fmt.Sprintf("of version %d in the canary group (host h02)", v)
	require.True(t, strings.Contains(reason, byGuard) ||
		strings.HasPrefix(reason, "rejected-preflight") && strings.Contains(reason, "PREFLIGHT_CRASH") && strings.HasSuffix(reason, byPreflight), reason)
}

func withoutEvidence(lcs []LegacyCanary) []LegacyCanary {
	var out []LegacyCanary
	for _, lc := range lcs {
		lc.Evidence = ""
		out = append(out, lc)
	}
	return out
}

// legacyOnDisk checks the legacy canaries' outcomes on disk, apart from the
// lab's report: h01 (the reference preflight) installed 1004, its agent
// crashed loading it and the boot guard reverted it (load-crash), and its
// boot record holds a cf291 version BAD by a load crash, or 1007 in that
// slot once scenario 6 staged it there (its journal then says it
// installed 1007 after that revert; the report has the boot record as it
// was at the end of scenarios 4 and 5a); h02 (preflight by its installed
// agent) refused 1004 in preflight (PREFLIGHT_CRASH) and never installed
// it, put it on trial or crashed, and no slot of its channel 291 holds a
// cf291 version.
func legacyOnDisk(t *testing.T, work string) {
	t.Helper()
	root := func(h string) string { return filepath.Join(work, "hosts", h, "root") }
	cf291 := []uint32{1004, 1006}
	kinds := func(h string, v uint32) []wire.Event {
		evs, err := daemon.ReadJournal(root(h))
		require.NoError(t, err)
		var out []wire.Event
		for _, ev := range evs {
			if ev.Channel == 291 && ev.Version == v {
				out = append(out, ev)
			}
		}
		return out
	}
	has := func(evs []wire.Event, f func(wire.Event) bool) bool { return slices.ContainsFunc(evs, f) }

	h01 := kinds("h01", 1004)
	require.True(t, has(h01, func(e wire.Event) bool { return e.Kind == wire.EventInstalled }), "h01 installed 1004: %+v", h01)
	require.True(t, has(h01, func(e wire.Event) bool { return e.Kind == wire.EventSensorCrashed && e.Evidence["during"] == "load" }),
		"h01's agent crashed loading 1004: %+v", h01)
	require.True(t, has(h01, func(e wire.Event) bool {
		return e.Kind == wire.EventReverted && e.Reason == bootguard.ReasonLoadCrash.String()
	}), "h01's boot guard reverted 1004: %+v", h01)
	rec, err := bootguard.Read(installer.RecordPathOf(root("h01"), 291))
	require.NoError(t, err)
	if !slices.ContainsFunc(rec.Slots[:], func(e bootguard.Entry) bool {
		return slices.Contains(cf291, e.Version) && e.State == bootguard.StateBad && e.Reason == bootguard.ReasonLoadCrash
	}) {
		evs, err := daemon.ReadJournal(root("h01"))
		require.NoError(t, err)
		reverted := slices.IndexFunc(evs, func(e wire.Event) bool {
			return e.Kind == wire.EventReverted && e.Reason == bootguard.ReasonLoadCrash.String() && slices.Contains(cf291, e.Version)
		})
		took := slices.IndexFunc(evs, func(e wire.Event) bool { return e.Kind == wire.EventInstalled && e.Version == 1007 })
		require.True(t, reverted >= 0 && took > reverted && slices.ContainsFunc(rec.Slots[:], func(e bootguard.Entry) bool { return e.Version == 1007 }),
			"h01's boot record holds a cf291 version BAD (load-crash), or 1007 staged over it after the revert: %+v", rec)
	}

	h02 := kinds("h02", 1004)
	require.True(t, has(h02, func(e wire.Event) bool {
		return e.Kind == wire.EventRejectedPreflight && slices.Contains(e.Codes, "PREFLIGHT_CRASH")
	}), "h02 refused 1004 in preflight: %+v", h02)
	for _, v := range cf291 {
		for _, e := range kinds("h02", v) {
			require.Contains(t, []wire.EventKind{wire.EventRejectedPreflight}, e.Kind, "h02 did nothing with %d but refuse it: %+v", v, e)
		}
	}
	rec, err = bootguard.Read(installer.RecordPathOf(root("h02"), 291))
	require.NoError(t, err)
	for _, e := range rec.Slots {
		require.NotContains(t, cf291, e.Version, "a cf291 version reached a slot of h02: %+v", rec)
	}
	require.Equal(t, bootguard.StateGood, rec.Entry(rec.Active).State)
}

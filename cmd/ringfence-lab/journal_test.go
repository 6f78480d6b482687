package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/wire"
)

var t0 = time.Date(2026, 12, 1, 14, 16, 44, 662e6, time.UTC)

// Reasons and evidence as ringfenced journals them (taken from a lab run).
const (
	stderrPanic    = "panic: runtime error: index out of range [20] with length 20\n\ngoroutine 1 [running]:\ngithub.com/ringfence/ringfence/sensor.matchAll({0x183118c00000?, 0x2})\n\t/work/main/sensor/sensor.go:138 +0x20e"
	reasonRejected = "installer: content failed validation: validator: rejected: FIELD_NOT_SUPPLIED: instance 1, field 22: template type IPC (id 7) declares 22 fields but sensor 7.12 supplies 21; FIELD_NOT_SUPPLIED: instance 2, field 22: template type IPC (id 7) declares 22 fields but sensor 7.12 supplies 21"
	firstRejected  = "FIELD_NOT_SUPPLIED: instance 1, field 22: template type IPC (id 7) declares 22 fields but sensor 7.12 supplies 21"
	running        = "channel 291 version 1002 (GOOD)"
)

func TestHostEventOf(t *testing.T) {
	tests := []struct {
		name string
		in   wire.Event
		ok   bool
		want hostEvent // Time, Channel and Version are the event's
	}{
		{"installed", wire.Event{Kind: wire.EventInstalled, Version: 1004, Evidence: map[string]string{"slot": "a"}}, true,
			hostEvent{Kind: evInstalled}},
		{"trial", wire.Event{Kind: wire.EventTrialStarted, Version: 1001}, true, hostEvent{Kind: evTrial}},
		{"healthy", wire.Event{Kind: wire.EventHealthy, Version: 1001}, true, hostEvent{Kind: evHealthy}},
		{"crashed loading: its panic line", wire.Event{Kind: wire.EventSensorCrashed, Reason: "exit status 2",
			Evidence: map[string]string{"stderr": stderrPanic, "during": "load"}}, true,
			hostEvent{Kind: evCrashed, Detail: "panic: runtime error: index out of range [20] with length 20", During: "load"}},
		{"crashed running: its first line", wire.Event{Kind: wire.EventSensorCrashed, Version: 1001, Reason: "exit status 1",
			Evidence: map[string]string{"stderr": "sensor: lost the ring buffer\nmore", "during": "run"}}, true,
			hostEvent{Kind: evCrashed, Detail: "sensor: lost the ring buffer", During: "run"}},
		{"crashed silently: how it exited", wire.Event{Kind: wire.EventSensorCrashed, Reason: "signal: killed"}, true,
			hostEvent{Kind: evCrashed, Detail: "signal: killed"}},
		{"crashed loading a trial: its channel and version", wire.Event{Kind: wire.EventSensorCrashed, Channel: 292, Version: 2002, Reason: "exit status 2",
			Evidence: map[string]string{"stderr": stderrPanic, "during": "load"}}, true,
			hostEvent{Kind: evCrashed, Detail: "panic: runtime error: index out of range [20] with length 20", During: "load"}},
		{"reverted by the guard", wire.Event{Kind: wire.EventReverted, Channel: 291, Version: 1004, Reason: "load-crash",
			Evidence: map[string]string{"running": running}}, true,
			hostEvent{Kind: evReverted, Reason: "load-crash", Detail: "load-crash; running " + running}},
		{"tries used", wire.Event{Kind: wire.EventReverted, Version: 1004, Reason: "tries-exhausted",
			Evidence: map[string]string{"running": running}}, true,
			hostEvent{Kind: evReverted, Reason: "tries-exhausted", Detail: "tries-exhausted; running " + running}},
		{"left a denied version: recalled", wire.Event{Kind: wire.EventReverted, Version: 1004, Reason: "manual",
			Evidence: map[string]string{"running": running}}, true,
			hostEvent{Kind: evRecalled, Detail: running}},
		{"rejected by the validator", wire.Event{Kind: wire.EventRejectedValidation, Version: 1005, Reason: reasonRejected,
			Codes: []string{"FIELD_NOT_SUPPLIED", "FIELD_NOT_SUPPLIED"}}, true,
			hostEvent{Kind: evRejected, Check: checkValidation, Codes: []string{"FIELD_NOT_SUPPLIED", "FIELD_NOT_SUPPLIED"}, Detail: firstRejected}},
		{"rejected by preflight", wire.Event{Kind: wire.EventRejectedPreflight, Version: 1006,
			Reason: "preflight: validator: rejected: PREFLIGHT_CRASH: interpreter crashed", Codes: []string{"PREFLIGHT_CRASH"}}, true,
			hostEvent{Kind: evRejected, Check: checkPreflight, Codes: []string{"PREFLIGHT_CRASH"}, Detail: "PREFLIGHT_CRASH: interpreter crashed"}},
		{"rejected, no codes: the whole reason", wire.Event{Kind: wire.EventRejectedValidation, Version: 1007, Reason: "it was odd"}, true,
			hostEvent{Kind: evRejected, Check: checkValidation, Detail: "it was odd"}},
		{"quarantined: the revert says it", wire.Event{Kind: wire.EventQuarantined, Version: 1004, Reason: "load-crash"}, false, hostEvent{}},
		{"heartbeat", wire.Event{Kind: wire.EventHeartbeat, Version: 1002}, false, hostEvent{}},
		{"fetch failed", wire.Event{Kind: wire.EventFetchFailed, Reason: "not-found"}, false, hostEvent{}},
		{"recovered offline", wire.Event{Kind: wire.EventRecoveredOffline, Version: 1004, Reason: "recovered"}, false, hostEvent{}},
		{"a kind from a newer daemon", wire.Event{Kind: "teleported"}, false, hostEvent{}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Seq, tt.in.Time = uint64(i+1), t0
			got, ok := hostEventOf(tt.in)
			require.Equal(t, tt.ok, ok)
			if !ok {
				return
			}
			tt.want.Channel, tt.want.Version, tt.want.Time = tt.in.Channel, tt.in.Version, t0
			require.Equal(t, tt.want, got)
		})
	}
}

func TestFirstProblem(t *testing.T) {
	tests := []struct {
		reason string
		codes  []string
		want   string
	}{
		{reasonRejected, []string{"FIELD_NOT_SUPPLIED"}, firstRejected},
		{"x: A_B: one; two; C_D: three", []string{"C_D", "A_B"}, "A_B: one; two"},
		{"x: A_B: one", []string{"W_ARN", "A_B"}, "A_B: one"}, // a warning's code is in Codes, not in the reason
		{"x: A_B: one", nil, "x: A_B: one"},
		{"", []string{"A_B"}, ""},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, firstProblem(tt.reason, tt.codes), tt.reason)
	}
}

// journal writes a host's journal as ringfenced does: wire.Event JSON
// lines in <root>/daemon/events.jsonl.
type journal struct {
	t    *testing.T
	path string
	seq  uint64
}

func newJournal(t *testing.T) (*journal, string) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, daemon.StatusDir), 0o755))
	return &journal{t: t, path: filepath.Join(root, daemon.StatusDir, daemon.JournalName)}, root
}

// line is the next event's line.
func (j *journal) line(kind wire.EventKind, v uint32) string {
	j.seq += 10 // the outbox's Seqs grow, not by one
	b, err := json.Marshal(wire.Event{ID: "e" + string(kind), Seq: j.seq, Kind: kind, Version: v, Time: t0.Add(time.Duration(j.seq) * time.Second)})
	require.NoError(j.t, err)
	return string(b) + "\n"
}

func (j *journal) write(s string) {
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	require.NoError(j.t, err)
	_, err = f.WriteString(s)
	require.NoError(j.t, err)
	require.NoError(j.t, f.Close())
}

// rotate moves the journal aside as the daemon does past MaxJournal.
func (j *journal) rotate() { require.NoError(j.t, os.Rename(j.path, j.path+".1")) }

func kinds(evs []hostEvent) []string {
	out := []string{}
	for _, ev := range evs {
		out = append(out, fmt.Sprint(ev.Kind, " ", ev.Version))
	}
	return out
}

// TestJournalFollower: a journal read while it is written yields each
// event once: a torn last line when it is whole, across rotations, and
// nothing twice after a rotation.
func TestJournalFollower(t *testing.T) {
	j, root := newJournal(t)
	f := newJournalFollower(root)
	require.Empty(t, f.read(), "no journal yet")

	heartbeat := j.line(wire.EventHeartbeat, 0)
	installed := j.line(wire.EventInstalled, 1001)
	trial := j.line(wire.EventTrialStarted, 1001)
	j.write(heartbeat + installed + trial[:30])
	require.Equal(t, []string{"installed 1001"}, kinds(f.read()), "the heartbeat is not counted; the torn line waits")
	require.Empty(t, f.read(), "nothing new")

	j.write(trial[30:] + j.line(wire.EventHealthy, 1001))
	require.Equal(t, []string{"trial 1001", "healthy 1001"}, kinds(f.read()))

	// Rotated between two reads: the old file's tail, then the new file.
	j.write(j.line(wire.EventInstalled, 1002))
	j.rotate()
	j.write(j.line(wire.EventTrialStarted, 1002))
	require.Equal(t, []string{"installed 1002", "trial 1002"}, kinds(f.read()))
	require.Empty(t, f.read(), "nothing twice")

	// Rotated with nothing new in the old file, and the new one not there
	// yet, then torn.
	j.rotate()
	require.Empty(t, f.read())
	healthy := j.line(wire.EventHealthy, 1002)
	j.write(healthy[:10])
	require.Empty(t, f.read())
	j.write(healthy[10:])
	require.Equal(t, []string{"healthy 1002"}, kinds(f.read()))

	// A line cut short by a crash, then appended to: the event after it
	// still counts.
	j.write(`{"id":"cut","seq":` + j.line(wire.EventInstalled, 1003))
	require.Equal(t, []string{"installed 1003"}, kinds(f.read()))

	// A new follower reads the rotated file and the current one: what the
	// daemon's own reader reads, and the event it skips with the cut line.
	all, err := daemon.ReadJournal(root)
	require.NoError(t, err)
	got := newJournalFollower(root).next()
	require.Len(t, got, len(all)+1)
	require.Equal(t, all, got[:len(all)])
	require.Equal(t, wire.EventInstalled, got[len(all)].Kind)
}

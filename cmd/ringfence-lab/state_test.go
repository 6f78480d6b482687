package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/installer"
)

// writeRecord writes channel ch's boot record under root.
func writeRecord(t *testing.T, root string, ch uint32, r bootguard.Record) {
	t.Helper()
	path := installer.RecordPathOf(root, ch)
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, bootguard.Rebuild(path, r))
}

func writeStatus(t *testing.T, root string, st daemon.Status) {
	t.Helper()
	b, err := json.Marshal(st)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(root, daemon.StatusDir), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, daemon.StatusDir, daemon.StatusName), b, 0o644))
}

// TestHostState: the lab reads each channel's state from its boot record,
// not from the status's words: 291 runs 1002 GOOD, 292 has 2001 staged and
// nothing active, a channel never written has no content; and a host whose
// last poll said 2001 waits, with 2001 staged, waited.
func TestHostState(t *testing.T) {
	root := t.TempDir()
	h := &host{HostSpec: HostSpec{Name: "h02", Canary: true}, root: root}
	require.False(t, h.runsGood(291, 1002), "no record, no status")
	require.Equal(t, "channel 291: no content; channel 292: no content; no status", h.describe([]uint32{291, 292}))

	var good bootguard.Record
	good.Active, good.Slots[0] = bootguard.SlotA, bootguard.Entry{Channel: 291, Version: 1002, State: bootguard.StateGood}
	writeRecord(t, root, 291, good)
	var staged bootguard.Record
	staged.Slots[0] = bootguard.Entry{Channel: 292, Version: 2001, State: bootguard.StateStaged}
	writeRecord(t, root, 292, staged)
	poll := daemon.PollResult{Action: daemon.ActionWaiting, Channel: 291, Version: 1006, Why: "a trial is in its health window",
		Channels: []daemon.PollResult{
			{Action: daemon.ActionWaiting, Channel: 291, Version: 1006, Why: "a trial is in its health window"},
			{Action: daemon.ActionWaiting, Channel: 292, Version: 2001, Why: "staged in slot a; waits for channel 291's trial to end (one trial at a time)"},
		}}
	writeStatus(t, root, daemon.Status{Channels: []uint32{291, 292}, Agent: daemon.AgentRestarting, LastPoll: time.Now(), Poll: poll})
	require.False(t, h.runsGood(291, 1002), "the agent is not up")
	writeStatus(t, root, daemon.Status{Channels: []uint32{291, 292}, Agent: daemon.AgentRunning, LastPoll: time.Now(), Poll: poll})
	require.True(t, h.runsGood(291, 1002))
	require.False(t, h.runsGood(291, 1001))
	require.False(t, h.runsGood(292, 2001), "staged is not running")
	require.False(t, h.runsGood(293, 3001))
	require.Equal(t, "channel 291 version 1002 (GOOD); channel 292: no content; agent running", h.describe([]uint32{291, 292}))

	l := &lab{hosts: []*host{h}}
	tr := &track{c: content{channel: 292, version: 2001}, waited: map[string]bool{}}
	lines := l.waits(tr)
	require.Len(t, lines, 1)
	require.Equal(t, "  h02 (canary): 2001 staged in slot a; waits for channel 291's trial to end (one trial at a time)", lines[0].text)
	require.True(t, tr.waited["h02"])
	require.Empty(t, l.waits(tr), "a host is noted once")

	// Once 2001 is active, the same poll result is no longer a wait.
	staged.Active, staged.Slots[0].State = bootguard.SlotA, bootguard.StateTrial
	writeRecord(t, root, 292, staged)
	tr = &track{c: content{channel: 292, version: 2001}, waited: map[string]bool{}}
	require.Empty(t, l.waits(tr))
	require.Equal(t, "channel 291 version 1002 (GOOD); channel 292 version 2001 (TRIAL); agent running", h.describe([]uint32{291, 292}))
}

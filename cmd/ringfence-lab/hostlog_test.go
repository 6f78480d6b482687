package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Lines as ringfenced logs them (taken from a lab run).
const (
	lineInstalled = `time=2026-12-01T14:16:44.662Z level=INFO msg="content installed as a trial; restarting the agent to load it" channel=291 version=1004 slot=a`
	lineTrial     = `time=2026-12-01T14:15:16.260Z level=INFO msg="trial started" channel=291 version=1001 health_window=10s`
	lineHealthy   = `time=2026-12-01T14:15:26.261Z level=INFO msg="trial passed its health window: new last-known-good" channel=291 version=1001`
	lineDied      = `time=2026-12-01T14:16:44.674Z level=ERROR msg="the agent died; the boot guard decides what it loads next" err="exit status 2" restart_in=1s stderr="panic: runtime error: index out of range [20] with length 20\n\ngoroutine 1 [running]:\ngithub.com/ringfence/ringfence/sensor.matchAll({0x183118c00000?, 0x2})\n\t/work/main/sensor/sensor.go:138 +0x20e"`
	lineReverted  = `time=2026-12-01T14:16:45.682Z level=WARN msg="content reverted by the boot guard and quarantined" channel=291 version=1004 reason=load-crash running="channel 291 version 1002 (GOOD)"`
	lineManual    = `time=2026-12-01T14:16:47.821Z level=WARN msg="content reverted by the boot guard and quarantined" channel=291 version=1004 reason=manual running="channel 291 version 1002 (GOOD)"`
	lineRecalled  = `time=2026-12-01T14:16:47.826Z level=INFO msg=poll action=reverted version=1004 why="the rollout plan denies it (rolled back upstream)"`
	lineRejected  = `time=2026-12-01T14:16:40.758Z level=WARN msg=poll action=rejected version=1005 why="installer: content failed validation: validator: rejected: FIELD_NOT_SUPPLIED: instance 1, field 22: template type IPC (id 7) declares 22 fields but sensor 7.12 supplies 21; FIELD_NOT_SUPPLIED: instance 2, field 22: template type IPC (id 7) declares 22 fields but sensor 7.12 supplies 21"`
	lineStarted   = `time=2026-12-01T14:15:13.416Z level=INFO msg="ringfenced started" version=dev host_id=h-c3356064d2c6d9a8d50529e46523d9e4 root=/tmp/lab6/hosts/h01/root channel=291`
	linePreflight = `time=2026-12-01T14:16:40.758Z level=WARN msg=poll action=rejected version=1006 why="preflight: PREFLIGHT_CRASH: interpreter crashed"`
)

func TestParseLogfmt(t *testing.T) {
	tests := []struct {
		line string
		want map[string]string
	}{
		{`a=1 b="two words" c=3`, map[string]string{"a": "1", "b": "two words", "c": "3"}},
		{`msg="quote \" and newline \n" x=y`, map[string]string{"msg": "quote \" and newline \n", "x": "y"}},
		{`k=`, map[string]string{"k": ""}},
		{``, map[string]string{}},
		{`not a log line`, map[string]string{}},
		{`a=1 b="unterminated`, map[string]string{"a": "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			require.Equal(t, tt.want, parseLogfmt(tt.line))
		})
	}
}

func TestParseEvent(t *testing.T) {
	tests := []struct {
		name string
		line string
		ok   bool
		kind string
		ver  uint32
		det  string
	}{
		{"installed", lineInstalled, true, evInstalled, 1004, ""},
		{"trial", lineTrial, true, evTrial, 1001, ""},
		{"healthy", lineHealthy, true, evHealthy, 1001, ""},
		{"died: its panic line", lineDied, true, evCrashed, 0, "panic: runtime error: index out of range [20] with length 20"},
		{"reverted by the guard", lineReverted, true, evReverted, 1004, "load-crash; running channel 291 version 1002 (GOOD)"},
		{"a denied version's revert is the recall below", lineManual, false, "", 0, ""},
		{"recalled", lineRecalled, true, evRecalled, 1004, "the rollout plan denies it (rolled back upstream)"},
		{"rejected", lineRejected, true, evRejected, 1005, ""},
		{"other lines", lineStarted, false, "", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, ok := parseEvent(tt.line)
			require.Equal(t, tt.ok, ok)
			if !ok {
				return
			}
			require.Equal(t, tt.kind, ev.Kind)
			require.Equal(t, tt.ver, ev.Version)
			require.False(t, ev.Time.IsZero())
			if tt.det != "" {
				require.Equal(t, tt.det, ev.Detail)
			}
		})
	}
	ev, _ := parseEvent(lineRejected)
	require.Equal(t, "validation", rejectedBy(ev.Detail))
	require.Equal(t, "FIELD_NOT_SUPPLIED: instance 1, field 22: template type IPC (id 7) declares 22 fields but sensor 7.12 supplies 21; FIELD_NOT_SUPPLIED: instance 2, field 22: template type IPC (id 7) declares 22 fields but sensor 7.12 supplies 21",
		rejectSummary(ev.Detail))
	ev, _ = parseEvent(linePreflight)
	require.Equal(t, "preflight", rejectedBy(ev.Detail))
	require.Equal(t, time.Date(2026, 12, 1, 14, 16, 40, 758e6, time.UTC), ev.Time.UTC())
}

// TestLogFollower: a log read while it is written yields each event once,
// a line cut in the middle only when it is complete.
func TestLogFollower(t *testing.T) {
	path := filepath.Join(t.TempDir(), "daemon.log")
	f := &logFollower{path: path}
	require.Empty(t, f.read(), "no file yet")
	w, err := os.Create(path)
	require.NoError(t, err)
	defer w.Close()

	_, err = w.WriteString(lineStarted + "\n" + lineInstalled + "\n" + lineTrial[:40])
	require.NoError(t, err)
	got := f.read()
	require.Len(t, got, 1)
	require.Equal(t, evInstalled, got[0].Kind)
	require.Empty(t, f.read(), "nothing new")

	_, err = w.WriteString(lineTrial[40:] + "\n" + lineDied + "\n")
	require.NoError(t, err)
	got = f.read()
	require.Len(t, got, 2)
	require.Equal(t, evTrial, got[0].Kind)
	require.Equal(t, uint32(1001), got[0].Version)
	require.Equal(t, evCrashed, got[1].Kind)
}

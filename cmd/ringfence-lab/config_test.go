package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	require.Equal(t, 50, c.Hosts)
	require.Equal(t, 5, c.Canaries)
	require.Equal(t, 25, c.LegacyHosts(), "half of 50: scenario 6's health test needs the evidence")
	require.Equal(t, 2, c.LegacyCanaries)
	require.Equal(t, 1, c.AgentPreflightCanaries, "one legacy canary of each preflight")
	require.Equal(t, []uint32{291, 292}, c.Channels)
	require.Equal(t, 2*time.Second, c.Host.PollInterval.Duration)
	require.Equal(t, 10*time.Second, c.Host.HealthWindow.Duration)
	require.Equal(t, c.Host.HealthWindow, c.Rollout.HealthWindow, "the server is told the hosts' window")
	var names []string
	for _, st := range c.Rollout.Stages {
		names = append(names, st.Name)
	}
	require.Equal(t, []string{"canary", "20%", "60%", "100%"}, names)
	require.True(t, c.Rollout.Stages[0].Canary)
	require.Equal(t, []string{"good-ipc-1001", "good-ipc-1002"}, c.Content.Good)
	require.Equal(t, "cf291-shape", c.Content.CF291)
	require.Equal(t, "cf291-field22", c.Content.Bypassed)
	require.Equal(t, "good-ipc-1001", c.Content.Second)
	require.Equal(t, uint32(2001), c.Content.SecondVersion)
	require.Equal(t, "costly-glob", c.Content.Costly)
}

func TestParseConfigRefuses(t *testing.T) {
	base := string(defaultConfig)
	tests := []struct {
		name string
		edit func(string) string
		want string
	}{
		{"unknown key", func(s string) string { return "hots = 3\n" + s }, "unknown key hots"},
		{"bad duration", func(s string) string {
			return strings.Replace(s, `poll_interval = "2s"`, `poll_interval = "2 seconds"`, 1)
		}, `"2 seconds" is not a duration`},
		{"poll below ringfenced's minimum", func(s string) string {
			return strings.Replace(s, `poll_interval = "2s"`, `poll_interval = "500ms"`, 1)
		}, "host.poll_interval must be at least 1s"},
		{"too many hosts", func(s string) string { return strings.Replace(s, "hosts = 50", "hosts = 201", 1) }, "hosts: 201; want 3..200"},
		{"as many canaries as hosts", func(s string) string { return strings.Replace(s, "canaries = 5", "canaries = 50", 1) }, "canaries: 50"},
		{"one canary", func(s string) string { return strings.Replace(s, "canaries = 5", "canaries = 1", 1) }, "canaries: 1; want 2..49"},
		{"one legacy canary", func(s string) string { return strings.Replace(s, "legacy_canaries = 2", "legacy_canaries = 1", 1) },
			"legacy_canaries: 1; want 2..canaries (5): scenario 4 needs a legacy canary with the reference preflight and one with preflight by the installed agent"},
		{"no agent preflight", func(s string) string {
			return strings.Replace(s, "agent_preflight_canaries = 1", "agent_preflight_canaries = 0", 1)
		}, "agent_preflight_canaries: 0; want 1..1 (fewer than legacy_canaries, 2)"},
		{"agent preflight on every legacy canary", func(s string) string {
			return strings.Replace(s, "agent_preflight_canaries = 1", "agent_preflight_canaries = 2", 1)
		}, "agent_preflight_canaries: 2; want 1..1 (fewer than legacy_canaries, 2): scenario 4 needs"},
		{"agent preflight not given", func(s string) string {
			return strings.Replace(s, "agent_preflight_canaries = 1", "", 1)
		}, "agent_preflight_canaries: 0"},
		{"three legacy canaries, two by the agent", func(s string) string {
			return strings.Replace(strings.Replace(s, "agent_preflight_canaries = 1", "agent_preflight_canaries = 2", 1), "legacy_canaries = 2", "legacy_canaries = 3", 1)
		}, ""},
		{"legacy hosts do not fit", func(s string) string { return strings.Replace(s, "legacy_percent = 50", "legacy_percent = 100", 1) }, "do not fit"},
		{"no 100% stage", func(s string) string { return strings.Replace(s, "percent = 100", "percent = 60", 1) }, "the last stage must be 100%"},
		{"stages shrink", func(s string) string { return strings.Replace(s, "percent = 100", "percent = 10", 1) }, "less than the stage before"},
		{"no good content", func(s string) string {
			return strings.Replace(s, `good = ["good-ipc-1001", "good-ipc-1002"]`, `good = []`, 1)
		}, "content.good"},
		{"the old single channel", func(s string) string {
			return strings.Replace(s, "channels = [291, 292]", "channel = 291", 1)
		}, "unknown key channel"},
		{"one channel", func(s string) string {
			return strings.Replace(s, "channels = [291, 292]", "channels = [291]", 1)
		}, "channels: [291]; want two channels"},
		{"three channels", func(s string) string {
			return strings.Replace(s, "channels = [291, 292]", "channels = [291, 292, 293]", 1)
		}, "want two channels"},
		{"the same channel twice", func(s string) string {
			return strings.Replace(s, "channels = [291, 292]", "channels = [291, 291]", 1)
		}, "want two channels"},
		{"channel 0", func(s string) string {
			return strings.Replace(s, "channels = [291, 292]", "channels = [291, 0]", 1)
		}, "want two channels"},
		{"no second content", func(s string) string {
			return strings.Replace(s, `second = "good-ipc-1001"`, "", 1)
		}, "content.second must name"},
		{"no second version", func(s string) string {
			return strings.Replace(s, "second_version = 2001", "", 1)
		}, "content.second_version must be set"},
		{"no costly content", func(s string) string {
			return strings.Replace(s, `costly = "costly-glob"`, "", 1)
		}, "content.costly must name"},
		{"zero timeout", func(s string) string { return strings.Replace(s, `timeout = "120s"`, `timeout = "0s"`, 1) }, "rollout.timeout must be a positive duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.edit(base)))
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestCanaryStageMustComeFirst(t *testing.T) {
	c := DefaultConfig()
	c.Rollout.Stages[0], c.Rollout.Stages[1] = c.Rollout.Stages[1], c.Rollout.Stages[0]
	require.ErrorContains(t, c.Check(), "only the first stage can be the canary group")
	c = DefaultConfig()
	c.Rollout.Stages[0].Canary = false
	c.Rollout.Stages[0].Percent = 1
	require.ErrorContains(t, c.Check(), "the first stage must be the canary group")
}

func TestFleet(t *testing.T) {
	names := func(hs []HostSpec, pick func(HostSpec) bool) []string {
		var out []string
		for _, h := range hs {
			if pick(h) {
				out = append(out, h.Name)
			}
		}
		return out
	}
	canary := func(h HostSpec) bool { return h.Canary }
	legacy := func(h HostSpec) bool { return h.Legacy }
	byAgent := func(h HostSpec) bool { return h.AgentPreflight }
	tests := []struct {
		name                                         string
		hosts, canaries, legacyCanaries, byAgentN    int
		percent                                      float64
		wantCanaries, wantLegacy, wantAgentPreflight []string
	}{
		{"the demo", 50, 5, 2, 1, 50,
			[]string{"h01", "h02", "h03", "h04", "h05"},
			[]string{"h01", "h02", "h06", "h07", "h09", "h11", "h13", "h15", "h17", "h19", "h21", "h23", "h25", "h27", "h29", "h31", "h33", "h35",
				"h37", "h39", "h41", "h43", "h45", "h47", "h49"},
			[]string{"h02"}},
		{"the demo before scenario 6", 50, 5, 2, 1, 20,
			[]string{"h01", "h02", "h03", "h04", "h05"},
			[]string{"h01", "h02", "h06", "h11", "h17", "h22", "h28", "h34", "h39", "h45"},
			[]string{"h02"}},
		{"the test", 20, 3, 2, 1, 90, []string{"h01", "h02", "h03"},
			[]string{"h01", "h02", "h04", "h05", "h06", "h07", "h08", "h09", "h10", "h11", "h12", "h13", "h14", "h15", "h16", "h17", "h18", "h19"},
			[]string{"h02"}},
		{"legacy canaries only", 6, 2, 2, 1, 0, []string{"h01", "h02"}, []string{"h01", "h02"}, []string{"h02"}},
		{"half legacy", 10, 2, 2, 1, 50, []string{"h01", "h02"}, []string{"h01", "h02", "h03", "h05", "h08"}, []string{"h02"}},
		{"two by the installed agent", 10, 4, 3, 2, 0, []string{"h01", "h02", "h03", "h04"}, []string{"h01", "h02", "h03"}, []string{"h02", "h03"}},
		{"three-digit names", 120, 2, 2, 1, 0, []string{"h001", "h002"}, []string{"h001", "h002"}, []string{"h002"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Hosts, c.Canaries, c.LegacyCanaries, c.AgentPreflightCanaries, c.LegacyPercent = tt.hosts, tt.canaries, tt.legacyCanaries, tt.byAgentN, tt.percent
			require.NoError(t, c.Check())
			hs := c.Fleet()
			require.Len(t, hs, tt.hosts)
			require.Equal(t, tt.wantCanaries, names(hs, canary))
			require.Equal(t, tt.wantLegacy, names(hs, legacy))
			require.Len(t, names(hs, legacy), c.LegacyHosts())
			require.Equal(t, tt.wantAgentPreflight, names(hs, byAgent), "the last legacy canaries")
		})
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/testtmp"
)

func runCLI(args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestTableAndChart(t *testing.T) {
	svg := filepath.Join(testtmp.Dir(t), "exposed.svg")
	out, errOut, code := runCLI("--hosts", "50000", "--duration", "24h", "--reps", "3", "--svg", svg)
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(out, "\n")
	var crashAll []string
	for _, l := range lines {
		if strings.HasPrefix(l, "crash-all") && strings.Contains(l, "all-at-once") {
			crashAll = strings.Fields(l)
		}
	}
	// The 2024 case all at once: every host that came online loads it and
	// crashes; with the guard none stays down, without it every one does.
	require.Len(t, crashAll, 9)
	loaded := number(t, crashAll[2])
	require.Greater(t, loaded, 49_000)
	require.Equal(t, crashAll[2], crashAll[3], "every host that loaded it crashed")
	require.Equal(t, "0", crashAll[4], "with the guard, none is down at the end")
	require.Equal(t, crashAll[2], crashAll[5], "without it, every one is")
	require.Equal(t, []string{"-", "-", "-"}, crashAll[6:], "nothing halts it, nothing reaches 99%")
	require.Contains(t, out, "ringfence over 3 seeds")
	var healthy []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "healthy" && strings.HasSuffix(f[1], "%") {
			healthy = f
		}
	}
	require.Len(t, healthy, 9, "the healthy row of the seeds' summary")
	require.Equal(t, []string{"0.0%", "0.0%", "0.0%"}, healthy[1:4], "no false halts")
	b, err := os.ReadFile(svg)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(b, []byte("<svg")))
	require.Equal(t, 24, bytes.Count(b, []byte("<polyline")), "eight scenarios, three policies")
}

func number(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.ReplaceAll(s, ",", ""))
	require.NoError(t, err)
	return n
}

func TestJSON(t *testing.T) {
	out, errOut, code := runCLI("--hosts", "20000", "--duration", "12h", "--scenarios", "crash-all", "--policies", "ringfence", "--json")
	require.Equal(t, 0, code, errOut)
	var got struct {
		Runs []struct {
			Scenario    string `json:"scenario"`
			Policy      string `json:"policy"`
			Loaded      int    `json:"loaded"`
			Halted      bool   `json:"halted"`
			DownNoGuard int    `json:"down_no_guard"`
			Series      []any  `json:"series"`
		} `json:"runs"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Len(t, got.Runs, 1)
	r := got.Runs[0]
	require.True(t, r.Halted)
	require.LessOrEqual(t, r.Loaded, 500)
	require.NotEmpty(t, r.Series)
}

func TestBadFlags(t *testing.T) {
	_, errOut, code := runCLI("--scenarios", "meteor")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `--scenarios: fleetsim: scenario "meteor"; want one of crash-all, crash-1pct, background-10x, background-3x, cpu-2x, silent-sensor, memory-leak, healthy`)
	_, errOut, code = runCLI("--policies", "ringfence,yolo")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `--policies: fleetsim: policy "yolo"; want one of all-at-once, waves, ringfence`)
	out, _, code := runCLI("--help")
	require.Equal(t, 0, code)
	require.Contains(t, out, "Bottlerocket")
}

func TestChannels(t *testing.T) {
	out, errOut, code := runCLI("--channels", "3,2", "--hosts", "20000", "--duration", "24h")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "K channels on the same 20,000 hosts")
	rows := map[string][]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 9 && (f[0] == "1" || f[0] == "2" || f[0] == "3") {
			rows[f[0]] = f
		}
	}
	require.Len(t, rows, 3, "one channel is always there, as the reference:\n%s", out)
	// channels, overlap: every, mean, vs 1; one trial: every, mean, vs 1, vs overlap, waited
	require.Equal(t, []string{"1.00", "1.00", "1.00", "0.0%"}, []string{rows["1"][3], rows["1"][6], rows["1"][7], rows["1"][8]})
	require.Equal(t, rows["1"][1], rows["1"][4], "one channel: the same in both modes")
	for _, k := range []string{"2", "3"} {
		require.NotEqual(t, "-", rows[k][4], "every channel reaches 99%%")
		slower, err := strconv.ParseFloat(rows[k][7], 64)
		require.NoError(t, err)
		require.Greater(t, slower, 1.0, "%d channels one trial at a time take longer than one", k)
		require.NotEqual(t, "0.0%", rows[k][8])
	}
	require.NotContains(t, out, "halted")

	out, errOut, code = runCLI("--channels", "2", "--hosts", "5000", "--duration", "12h", "--emergency", "--json")
	require.Equal(t, 0, code, errOut)
	var got struct {
		Channels []struct {
			K        int `json:"channels"`
			OneTrial struct {
				Reach99 int64 `json:"reach_99"`
				Runs    []any `json:"runs"`
			} `json:"one_trial"`
		} `json:"channels"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Len(t, got.Channels, 2)
	require.Equal(t, 2, got.Channels[1].K)
	require.Len(t, got.Channels[1].OneTrial.Runs, 2)
	require.Positive(t, got.Channels[1].OneTrial.Reach99)

	_, errOut, code = runCLI("--channels", "0")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `--channels: "0": want a number of channels, 1..16`)
	_, errOut, code = runCLI("--channels", "2", "--reps", "3")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--reps does not go with --channels")
}

// TestGoals: --goals prints every goal with what was measured; on a small
// fleet the 2024 case's goals are met and the healthy rollout's time is
// measured (whether it meets 4 h depends on the fleet's size).
func TestGoals(t *testing.T) {
	out, errOut, code := runCLI("--goals", "--hosts", "30000", "--canaries", "50", "--duration", "24h", "--policies", "ringfence", "--scenarios", "crash-all,healthy,cpu-2x", "--reps", "2", "--reps-hosts", "20000")
	require.Equal(t, 0, code, errOut)
	_, goals, ok := strings.Cut(out, "\ngoals:\n")
	require.True(t, ok, out)
	require.Contains(t, goals, "MET     the 2024 case exposes at most 100 of 30,000 hosts")
	require.Regexp(t, `CPU doubling halted before 1%, over seeds at 20,000 hosts +>= 99% of seeds +[0-9] of 2 `, goals)
	require.Contains(t, goals, "not run a 10x background crash rise", "a scenario not run is said so, not counted as met")
	require.Regexp(t, `healthy content reaches 99% of 30,000 hosts, emergency schedule +<= 1\.0h +[0-9.]+h`, goals)
}

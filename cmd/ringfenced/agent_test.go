package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/sensor"
)

// TestAgentPreflight: `agent --preflight` runs a file in the interpreter
// its --capabilities describe, with the reference preflight harness: the
// same exit code and report as `sensor preflight` given the same manifest.
// cf291-shape passes a 7.12 interpreter and crashes a 7.11 one.
func TestAgentPreflight(t *testing.T) {
	t.Setenv(daemon.EnvRoot, "") // a preflight needs no root
	caps := func(v string) string { return filepath.Join(testfiles.Dir(), "capabilities", "sensor-"+v+".json") }
	file := func(name string) string { return filepath.Join(testfiles.Dir(), "channels", name+".rfch") }
	for _, tc := range []struct {
		caps, file string
		code       int
		stderr     string
	}{
		{"7.11", "good-ipc-1001", sensor.ExitPass, ""},
		{"7.12", "good-ipc-1001", sensor.ExitPass, ""},
		{"7.11", "cf291-shape", sensor.ExitCrash, "index out of range [20] with length 20"},
		{"7.12", "cf291-shape", sensor.ExitPass, ""},
		{"7.11", "bad-magic", sensor.ExitLoad, "BAD_MAGIC"},
	} {
		t.Run(tc.caps+"/"+tc.file, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run([]string{"agent", "--capabilities", caps(tc.caps), "--preflight", file(tc.file)}, &out, &errb)
			require.Equal(t, tc.code, code, "stderr: %s", errb.String())
			require.Contains(t, errb.String(), tc.stderr)
			if tc.code == sensor.ExitPass {
				require.Contains(t, out.String(), `"sensor":"`+tc.caps+`"`)
				require.Empty(t, errb.String())
			} else {
				require.Empty(t, out.String())
			}

			var sout, serr bytes.Buffer
			scode := run([]string{"sensor", "preflight", "--capabilities", caps(tc.caps), file(tc.file)}, &sout, &serr)
			require.Equal(t, scode, code, "the agent's preflight and 'sensor preflight' disagree")
			require.Equal(t, sout.String(), out.String())
			if code == sensor.ExitCrash {
				require.Equal(t, firstLine(serr.String()), firstLine(errb.String()))
			}
		})
	}
}

func TestAgentPreflightUsage(t *testing.T) {
	t.Setenv(daemon.EnvRoot, "")
	good := filepath.Join(testfiles.Dir(), "channels", "good-ipc-1001.rfch")
	for name, args := range map[string][]string{
		"no file":                     {"agent", "--preflight"},
		"two files":                   {"agent", "--preflight", good, good},
		"bad manifest":                {"agent", "--capabilities", filepath.Join(testtmp.Dir(t), "missing.json"), "--preflight", good},
		"missing file":                {"agent", "--preflight", filepath.Join(testtmp.Dir(t), "missing.rfch")},
		"no root without --preflight": {"agent"},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			require.Equal(t, sensor.ExitUsage, run(args, &out, &errb))
			require.NotEmpty(t, errb.String())
			require.Empty(t, out.String())
		})
	}
	// The seed is the harness's own unless given: the same run twice.
	var a, b bytes.Buffer
	require.Equal(t, sensor.ExitPass, run([]string{"agent", "--preflight", good}, &a, &bytes.Buffer{}))
	require.Equal(t, sensor.ExitPass, run([]string{"agent", "--preflight", "--seed", "1", good}, &b, &bytes.Buffer{}))
	require.Equal(t, a.String(), b.String())
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

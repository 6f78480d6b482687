package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const asMainEnv = "RINGFENCE_TEST_AS_MAIN"

// TestMain lets the test binary stand in for the ringfence binary when
// validate --preflight re-executes itself ("ringfence sensor preflight").
func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Setenv(asMainEnv, "1") // inherited by the preflight children only
	defer os.Unsetenv(asMainEnv)
	os.Exit(m.Run())
}

func td(parts ...string) string {
	return filepath.Join(append([]string{"..", "..", "testdata"}, parts...)...)
}

func runCLI(args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestValidateCLI(t *testing.T) {
	caps711 := td("capabilities", "sensor-7.11.json")
	caps712 := td("capabilities", "sensor-7.12.json")
	cf291 := td("channels", "cf291-shape.rfch")
	good := td("channels", "good-ipc-1001.rfch")
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string // substrings, in order
		stderr string
	}{
		{"good", []string{"validate", good}, 0, []string{good + ": ok (channel 291, version 1001, 4 instances)"}, ""},
		{"cf291 rejected", []string{"validate", "--capabilities", caps711, cf291}, 1, []string{
			cf291 + ": FIELD_COUNT_MISMATCH: warning: ",
			cf291 + ": FIELD_NOT_SUPPLIED: instance 1, field 21: template type IPC (id 7) declares 21 fields but sensor 7.11 supplies 20",
			cf291 + ": FIELD_NOT_SUPPLIED: instance 3, field 21:",
		}, ""},
		{"cf291 on the newer sensor", []string{"validate", "--capabilities", caps712, cf291}, 0, []string{cf291 + ": ok"}, ""},
		{"flags after files", []string{"validate", cf291, "--capabilities", caps712}, 0, []string{cf291 + ": ok"}, ""},
		{"preflight alone catches cf291", []string{"validate", "--preflight", "--skip-static", cf291}, 1, []string{
			cf291 + ": PREFLIGHT_CRASH: preflight: interpreter crashed in instance 1 (id 291) on synthesized event 1: runtime error: index out of range [20] with length 20",
			"sensor.matchAll (sensor/sensor.go:",
		}, ""},
		{"preflight passes good", []string{"validate", "--preflight", good}, 0, []string{good + ": ok (channel 291, version 1001, 4 instances; preflight passed)"}, ""},
		{"mixed files exit 1", []string{"validate", good, cf291}, 1, []string{good + ": ok", cf291 + ": FIELD_NOT_SUPPLIED"}, ""},
		{"installed version", []string{"validate", "--installed", "291:1001", good}, 1, []string{"VERSION_NOT_MONOTONIC"}, ""},
		{"skip-static needs preflight", []string{"validate", "--skip-static", good}, 2, nil, "add --preflight"},
		{"no files", []string{"validate"}, 2, nil, "no files given"},
		{"missing file", []string{"validate", "nope.rfch"}, 2, nil, "nope.rfch"},
		{"bad capabilities", []string{"validate", "--capabilities", good, good}, 2, nil, "bad capability manifest"},
		{"bad installed", []string{"validate", "--installed", "291", good}, 2, nil, "CHANNEL:VERSION"},
		{"unknown flag", []string{"validate", "--frobnicate", good}, 2, nil, "flag provided but not defined"},
		{"help", []string{"validate", "--help"}, 0, []string{"Usage: ringfence validate", "--skip-static"}, ""},
		{"top help", []string{"help"}, 0, []string{"validate", "channel", "sensor"}, ""},
		{"unknown command", []string{"frob"}, 2, nil, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCLI(tt.args...)
			require.Equal(t, tt.code, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
			rest := out
			for _, s := range tt.stdout {
				i := strings.Index(rest, s)
				require.GreaterOrEqual(t, i, 0, "missing %q in stdout:\n%s", s, out)
				rest = rest[i+len(s):]
			}
			if tt.stderr != "" {
				require.Contains(t, errOut, tt.stderr)
			}
		})
	}
}

func TestValidateJSON(t *testing.T) {
	out, _, code := runCLI("validate", "--json", td("channels", "cf291-shape.rfch"), td("channels", "good-ipc-1002.rfch"))
	require.Equal(t, 1, code)
	var res []fileResult
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Len(t, res, 2)
	require.False(t, res[0].Valid)
	require.Equal(t, 21, res[0].Problems[1].Field)
	require.Equal(t, 1, res[0].Problems[1].Instance)
	require.True(t, res[1].Valid)
	require.Equal(t, uint32(1002), res[1].ContentVersion)
}

// TestValidateNeverPanics runs the CLI over every testdata file, garbage and
// an empty file: exit codes are 0, 1 or 2, never a crash.
func TestValidateNeverPanics(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.rfch")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	files, err := filepath.Glob(td("channels", "*.rfch"))
	require.NoError(t, err)
	files = append(files, empty, td("capabilities", "sensor-7.11.json"))
	for _, f := range files {
		_, _, code := runCLI("validate", f)
		require.Contains(t, []int{0, 1}, code, f)
	}
}

func TestChannelBuildDump(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "x.rfch")
	src := td("channels", "src", "good-ipc-1002.json")
	stdout, errOut, code := runCLI("channel", "build", "-o", out, src)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, stdout, "channel 291, version 1002, 5 instances")
	built, err := os.ReadFile(out)
	require.NoError(t, err)
	want, err := os.ReadFile(td("channels", "good-ipc-1002.rfch"))
	require.NoError(t, err)
	require.Equal(t, want, built)

	dumped, errOut, code := runCLI("channel", "dump", out)
	require.Equal(t, 0, code, errOut)
	orig, err := os.ReadFile(src)
	require.NoError(t, err)
	require.Equal(t, string(orig), dumped)

	_, errOut, code = runCLI("channel", "dump", td("channels", "bad-checksum.rfch"))
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "CHECKSUM")
	_, _, code = runCLI("channel", "build", src)
	require.Equal(t, 2, code, "build without -o")
}

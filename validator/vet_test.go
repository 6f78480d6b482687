package validator_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/validator"
	"github.com/stretchr/testify/require"
)

// TestVet runs the product's check over the testdata channel files: what it
// accepts, which check refuses what, and how the refusal reads.
func TestVet(t *testing.T) {
	sensorOn := func(ver string) *validator.PreflightOptions { return vetChild("sensor", "--capabilities", caps(ver)) }
	bomb := sensorOn("7.11")
	bomb.Timeout = 2 * time.Second
	hog := childOpts("hog") // allocates without end
	hog.MaxMemory, hog.Timeout = 256<<20, time.Minute
	var noMemoryLimit string
	switch {
	case raceEnabled:
		noMemoryLimit = "the race detector's runtime cannot start under a 256 MiB RLIMIT_DATA; `make unit` runs this test again without -race"
	case testtmp.UnderWine():
		noMemoryLimit = "Wine does not enforce a job object's memory limit (JOB_OBJECT_LIMIT_PROCESS_MEMORY); Windows does"
	}
	tests := []struct {
		name     string
		file     string
		caps     string // the static checks' capabilities
		opts     validator.VetOptions
		refused  validator.Stage
		ran      bool             // the preflight ran
		codes    []validator.Code // codes among the problems, in order
		oneOf    []validator.Code // or: one problem, with one of these codes
		skip     string           // why this platform cannot run the row
		parsed   bool             // Verdict.File is set
		contains []string         // in what Print writes and Refusal says
	}{
		{name: "good, static only", file: "good-ipc-1001", caps: "7.11",
			parsed: true},
		{name: "good, preflight passes", file: "good-ipc-1003", caps: "7.11", opts: validator.VetOptions{Preflight: sensorOn("7.11")},
			ran: true, parsed: true},
		{name: "cf291 refused by validation, preflight not run", file: "cf291-shape", caps: "7.11", opts: validator.VetOptions{Preflight: sensorOn("7.11")},
			refused: validator.StageValidation, codes: []validator.Code{validator.CodeFieldCountMismatch, validator.CodeFieldNotSupplied}, parsed: true,
			contains: []string{"F: FIELD_NOT_SUPPLIED: instance 1, field 21:", "F is invalid"}},
		{name: "corrupt file refused by validation", file: "bad-checksum", caps: "7.11",
			refused: validator.StageValidation, codes: []validator.Code{validator.CodeChecksum}, contains: []string{"F: CHECKSUM: "}},
		{name: "not newer than installed", file: "good-ipc-1001", caps: "7.11",
			opts:    validator.VetOptions{Options: validator.Options{Installed: &validator.Installed{Channel: 291, ContentVersion: 1001}}},
			refused: validator.StageValidation, codes: []validator.Code{validator.CodeVersionNotMonotonic}, parsed: true},
		{name: "installed on another channel", file: "good-ipc-1001", caps: "7.11",
			opts:   validator.VetOptions{Options: validator.Options{Installed: &validator.Installed{Channel: 292, ContentVersion: 5000}}},
			parsed: true},
		{name: "crash refused by preflight", file: "cf291-shape", caps: "7.12", opts: validator.VetOptions{Preflight: sensorOn("7.11")},
			refused: validator.StagePreflight, ran: true, codes: []validator.Code{validator.CodePreflightCrash}, parsed: true,
			contains: []string{"F: PREFLIGHT_CRASH: preflight: interpreter crashed", "index out of range [20] with length 20",
				"F: PREFLIGHT_CRASH: at github.com/ringfence/ringfence/sensor.matchAll (sensor/sensor.go:", "F failed preflight"}},
		{name: "hang refused by preflight", file: "bad-pattern-bomb", caps: "7.11", opts: validator.VetOptions{SkipStatic: true, Preflight: bomb},
			refused: validator.StagePreflight, ran: true, codes: []validator.Code{validator.CodePreflightTimeout}, parsed: true,
			contains: []string{"F: PREFLIGHT_TIMEOUT: ", "F failed preflight"}},
		{name: "memory refused by preflight", file: "good-ipc-1001", caps: "7.11", opts: validator.VetOptions{Preflight: &hog},
			// Go sometimes dies of SIGSEGV in its collector at the limit
			// (see Preflight): a crash, and still a refusal.
			refused: validator.StagePreflight, ran: true, oneOf: []validator.Code{validator.CodePreflightMemory, validator.CodePreflightCrash}, parsed: true,
			skip: noMemoryLimit},
		{name: "vendor preflight refuses", file: "good-ipc-1001", caps: "7.11", opts: validator.VetOptions{Preflight: vetChild("vendor-reject")},
			refused: validator.StagePreflight, ran: true, codes: []validator.Code{validator.CodePreflightFailed}, parsed: true,
			contains: []string{"vendor-sensor: template 7 not loadable"}},
		{name: "skip-static: preflight alone catches cf291", file: "cf291-shape", caps: "7.11", opts: validator.VetOptions{SkipStatic: true, Preflight: sensorOn("7.11")},
			refused: validator.StagePreflight, ran: true, codes: []validator.Code{validator.CodePreflightCrash}, parsed: true},
		{name: "skip-static without preflight checks nothing", file: "cf291-shape", caps: "7.11", opts: validator.VetOptions{SkipStatic: true},
			parsed: true},
		{name: "skip-static on a corrupt file", file: "bad-checksum", caps: "7.11", opts: validator.VetOptions{SkipStatic: true}},
		{name: "a broken preflight command is not run after a refusal", file: "cf291-shape", caps: "7.11",
			opts:    validator.VetOptions{Preflight: &validator.PreflightOptions{Command: []string{filepath.Join(testtmp.Dir(t), "missing")}}},
			refused: validator.StageValidation, codes: []validator.Code{validator.CodeFieldCountMismatch, validator.CodeFieldNotSupplied}, parsed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skip != "" {
				t.Skip(tt.skip)
			}
			tmp := testtmp.Dir(t)
			tt.opts.TempDir = tmp
			v, err := validator.Vet(context.Background(), testfiles.Channel(t, tt.file), testfiles.Capabilities(t, tt.caps), tt.opts)
			require.NoError(t, err)
			require.Equal(t, tt.refused, v.RefusedBy, "%v", v.Problems)
			require.Equal(t, tt.refused == validator.StageNone, v.Accepted())
			require.Equal(t, tt.ran, v.Preflighted)
			require.Equal(t, tt.parsed, v.File != nil)
			if tt.oneOf != nil {
				require.Len(t, v.Problems, 1)
				require.Contains(t, tt.oneOf, v.Problems[0].Code, "%v", v.Problems[0])
			} else {
				var got []validator.Code
				for _, p := range v.Problems {
					if !slices.Contains(got, p.Code) {
						got = append(got, p.Code)
					}
				}
				require.Equal(t, tt.codes, got, "%v", v.Problems)
			}
			require.Len(t, v.Codes(), len(v.Problems))

			var out strings.Builder
			v.Print(&out, "F")
			text := out.String() + v.Refusal("F")
			for _, s := range tt.contains {
				require.Contains(t, text, s)
			}
			entries, err := os.ReadDir(tmp)
			require.NoError(t, err)
			require.Empty(t, entries, "the preflight's copy is removed")

			err = v.Err()
			if tt.refused == validator.StageNone {
				require.NoError(t, err)
				require.Empty(t, v.Refusal("F"))
				return
			}
			var rej *validator.RejectedError
			require.ErrorAs(t, err, &rej)
			require.Equal(t, tt.refused == validator.StagePreflight, strings.HasPrefix(err.Error(), "preflight: "), err.Error())
		})
	}
}

// vetChild is childOpts with a memory limit far above what the children
// use. On Linux a child's peak RSS, Preflight's evidence of memory
// exhaustion, starts at its parent's: exec records the high-water mark of
// the address space it replaces, which after vfork is the parent's, and a
// test binary under -race that has read a 32 MiB file (TestReadFile) has a
// large one. The rows that run it are about which check refuses a file;
// the memory row sets its own limit.
func vetChild(mode string, args ...string) *validator.PreflightOptions {
	o := childOpts(mode, args...)
	o.MaxMemory = 4 << 30
	return &o
}

// TestVetCannotRun: a preflight that cannot run is an error, not a
// refusal: it says nothing about the file.
func TestVetCannotRun(t *testing.T) {
	good := testfiles.Channel(t, "good-ipc-1001")
	c := testfiles.Capabilities(t, "7.11")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		opts validator.VetOptions
		want error // nil: any error
	}{
		{"no command", context.Background(), validator.VetOptions{Preflight: &validator.PreflightOptions{}}, validator.ErrPreflightCommand},
		{"command missing", context.Background(), validator.VetOptions{Preflight: &validator.PreflightOptions{Command: []string{filepath.Join(testtmp.Dir(t), "missing")}}},
			validator.ErrPreflightCommand},
		{"no directory for the copy", context.Background(), func() validator.VetOptions {
			o := childOpts("sensor")
			return validator.VetOptions{Preflight: &o, TempDir: filepath.Join(testtmp.Dir(t), "missing")}
		}(), validator.ErrPreflightCommand},
		{"cancelled", cancelled, func() validator.VetOptions {
			o := childOpts("sensor")
			return validator.VetOptions{Preflight: &o}
		}(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := validator.Vet(tt.ctx, good, c, tt.opts)
			require.Error(t, err)
			if tt.want != nil {
				require.ErrorIs(t, err, tt.want)
			}
			require.False(t, v.Preflighted)
			require.NotNil(t, v.File, "the static checks ran")
		})
	}
}

// TestVerdictPrint: the crash frame is picked out of a Go traceback,
// recovered or not, and nothing is added for other output.
func TestVerdictPrint(t *testing.T) {
	const unrecovered = "panic: runtime error: index out of range [3] with length 3\n\ngoroutine 1 [running]:\n" +
		"vendor.example/interp.(*VM).load(...)\n\tC:/build/interp/vm.go:42 +0x1d\nmain.main()\n\t/src/main.go:9 +0x25\nexit status 2\n"
	const recovered = "goroutine 7 [running]:\nruntime/debug.Stack()\n\t/go/src/runtime/debug/stack.go:26 +0x5e\n" +
		"x/interp.guard.func1()\n\t/src/interp/guard.go:10 +0xb5\npanic({0x1, 0x2})\n\t/go/src/runtime/panic.go:860 +0x13a\n" +
		"runtime.goPanicIndex(0x3, 0x3)\n\t/go/src/runtime/panic.go:115 +0x33\nx/interp.match(0x1)\n\t/src/interp/match.go:77 +0x20\n"
	tests := []struct {
		name   string
		code   validator.Code
		detail string
		frame  string // "" = no frame line
	}{
		{"unrecovered panic", validator.CodePreflightCrash, unrecovered, "F: PREFLIGHT_CRASH: at vendor.example/interp.(*VM).load (interp/vm.go:42)"},
		{"recovered panic", validator.CodePreflightCrash, recovered, "F: PREFLIGHT_CRASH: at x/interp.match (interp/match.go:77)"},
		{"not a Go program", validator.CodePreflightCrash, "Segmentation fault (core dumped)\n", ""},
		{"not a crash", validator.CodePreflightFailed, unrecovered, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := validator.Verdict{RefusedBy: validator.StagePreflight, Preflighted: true, Problems: validator.Problems{
				{Code: tt.code, Severity: validator.SeverityError, Offset: -1, Message: "preflight: it died", Detail: tt.detail},
			}}
			var out strings.Builder
			v.Print(&out, "F")
			want := "F: " + string(tt.code) + ": preflight: it died\n"
			if tt.frame != "" {
				want += tt.frame + "\n"
			}
			require.Equal(t, want, out.String())
		})
	}
}

func TestStageString(t *testing.T) {
	for s, want := range map[validator.Stage]string{
		validator.StageNone: "none", validator.StageValidation: "validation", validator.StagePreflight: "preflight", 9: "Stage(9)",
	} {
		require.Equal(t, want, s.String())
	}
}

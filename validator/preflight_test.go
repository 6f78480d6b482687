package validator_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/validator"
	"github.com/stretchr/testify/require"
)

const childEnv = "RINGFENCE_PREFLIGHT_CHILD"

// TestMain lets the test binary serve as the preflight child: with childEnv
// set it runs the reference preflight command (or a misbehaving stand-in)
// instead of the tests.
func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "sensor":
		os.Exit(sensor.PreflightMain(os.Args[1:], os.Stdout, os.Stderr))
	case "vendor-reject": // a vendor's preflight that refuses the file, on any OS
		fmt.Fprintln(os.Stderr, "vendor-sensor: template 7 not loadable")
		os.Exit(1)
	case "hog":
		var keep [][]byte
		for {
			keep = append(keep, make([]byte, 16<<20))
			for i := 0; i < len(keep[len(keep)-1]); i += 4096 {
				keep[len(keep)-1][i] = 1
			}
		}
	}
	os.Exit(m.Run())
}

func childOpts(mode string, args ...string) validator.PreflightOptions {
	return validator.PreflightOptions{
		Command: append([]string{os.Args[0]}, args...),
		Env:     append(os.Environ(), childEnv+"="+mode),
	}
}

func channel(name string) string { return filepath.Join("..", "testdata", "channels", name+".rfch") }

func caps(ver string) string {
	return filepath.Join("..", "testdata", "capabilities", "sensor-"+ver+".json")
}

func TestPreflight(t *testing.T) {
	tests := []struct {
		name     string
		file     string
		opts     validator.PreflightOptions
		want     validator.Code // "" = passes
		contains []string
	}{
		{"good", "good-ipc-1003", childOpts("sensor"), "", nil},
		{"cf291 shape on 7.11 crashes", "cf291-shape", childOpts("sensor", "--capabilities", caps("7.11")), validator.CodePreflightCrash,
			[]string{"index out of range [20] with length 20", "sensor.matchAll"}},
		{"cf291 shape on 7.12 runs", "cf291-shape", childOpts("sensor", "--capabilities", caps("7.12")), "", nil},
		{"cf291 wildcard on 7.11 runs", "cf291-wildcard", childOpts("sensor", "--capabilities", caps("7.11")), "", nil},
		{"pattern bomb times out", "bad-pattern-bomb", func() validator.PreflightOptions {
			o := childOpts("sensor")
			o.Timeout = 2 * time.Second
			return o
		}(), validator.CodePreflightTimeout, nil},
		{"corrupt file does not load", "bad-checksum", childOpts("sensor"), validator.CodePreflightFailed, []string{"CHECKSUM"}},
		{"vendor command rejects", "good-ipc-1001", childOpts("vendor-reject"), validator.CodePreflightFailed, []string{"vendor-sensor: template 7 not loadable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, err := validator.Preflight(context.Background(), channel(tt.file), tt.opts)
			require.NoError(t, err)
			if tt.want == "" {
				require.Empty(t, ps)
				return
			}
			require.Len(t, ps, 1, "%v", ps)
			require.Equal(t, tt.want, ps[0].Code, "%v\n%s", ps[0], ps[0].Detail)
			for _, c := range tt.contains {
				require.Contains(t, ps[0].Message+ps[0].Detail, c)
			}
		})
	}
}

// TestPreflightMemoryLimit runs a child that allocates without end: the
// memory limit, not the timeout, must stop it, and the file is rejected.
func TestPreflightMemoryLimit(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's runtime cannot start under a 256 MiB RLIMIT_DATA; `make unit` runs this test again without -race")
	}
	if testtmp.UnderWine() {
		t.Skip("Wine does not enforce a job object's memory limit (JOB_OBJECT_LIMIT_PROCESS_MEMORY); Windows does")
	}
	o := childOpts("hog")
	o.MaxMemory = 256 << 20
	o.Timeout = time.Minute
	ps, err := validator.Preflight(context.Background(), channel("good-ipc-1001"), o)
	require.NoError(t, err)
	require.Len(t, ps, 1)
	require.Contains(t, []validator.Code{validator.CodePreflightMemory, validator.CodePreflightCrash}, ps[0].Code, "%v", ps[0])
}

func TestPreflightCannotRun(t *testing.T) {
	_, err := validator.Preflight(context.Background(), channel("good-ipc-1001"), validator.PreflightOptions{Command: []string{filepath.Join(testtmp.Dir(t), "missing")}})
	require.ErrorIs(t, err, validator.ErrPreflightCommand)
	_, err = validator.Preflight(context.Background(), channel("good-ipc-1001"), validator.PreflightOptions{})
	require.ErrorIs(t, err, validator.ErrPreflightCommand)
}

func TestPreflightCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := validator.Preflight(ctx, channel("bad-pattern-bomb"), childOpts("sensor"))
	require.Error(t, err)
}

// writeLargeFile writes a valid file of n IPC instances, each with three
// conditions, to dir and returns its path and bytes.
func writeLargeFile(tb testing.TB, dir string, n int) (string, []byte) {
	tb.Helper()
	c, err := validator.LoadCapabilities(caps("7.11"))
	require.NoError(tb, err)
	f := &validator.ChannelFile{Channel: 291, ContentVersion: 2000, TemplateType: 7, TemplateVersion: 1}
	for _, in := range c.Template(7).Inputs {
		f.Fields = append(f.Fields, in.Type)
	}
	for i := range n {
		f.Instances = append(f.Instances, validator.Instance{ID: uint32(i + 1), Action: validator.ActionAlert, Matchers: []validator.Matcher{
			{Field: 0, Kind: validator.MatchPrefix, Str: fmt.Sprintf(`\\.\pipe\agent_%06d_`, i)},
			{Field: 1, Kind: validator.MatchPattern, Str: fmt.Sprintf(`*\tool%d?.exe`, i%97)},
			{Field: 16, Kind: validator.MatchRange, Lo: uint64(i % 1000), Hi: uint64(i%1000 + 100)},
		}})
	}
	data, err := validator.Encode(f)
	require.NoError(tb, err)
	path := filepath.Join(dir, "large.rfch")
	require.NoError(tb, os.WriteFile(path, data, 0o644))
	return path, data
}

// BenchmarkPreflight1000 measures a whole preflight of a 1,000-instance
// file: child process start, load, synthesized and random events.
func BenchmarkPreflight1000(b *testing.B) {
	path, _ := writeLargeFile(b, testtmp.Dir(b), 1000)
	opts := childOpts("sensor")
	for b.Loop() {
		ps, err := validator.Preflight(context.Background(), path, opts)
		if err != nil || len(ps) > 0 {
			b.Fatal(err, ps)
		}
	}
}

// BenchmarkValidate1MiB measures Parse+Validate throughput on a 1 MiB file.
func BenchmarkValidate1MiB(b *testing.B) {
	_, one := writeLargeFile(b, testtmp.Dir(b), 1)
	_, two := writeLargeFile(b, testtmp.Dir(b), 2)
	per := len(two) - len(one)
	_, data := writeLargeFile(b, testtmp.Dir(b), (1<<20-(len(one)-per))/per)
	c, err := validator.LoadCapabilities(caps("7.11"))
	require.NoError(b, err)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, ps := validator.Validate(data, c, validator.Options{}); ps.HasErrors() {
			b.Fatal(ps)
		}
	}
}

// TestPreflightPeakIsTheChilds: a parent with a large peak of its own does
// not make a small child's failure read as running out of memory (the
// kernel reports a vfork child's peak from its parent's).
func TestPreflightPeakIsTheChilds(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the peak comes from the kernel's rusage on Linux")
	}
	ballast := make([]byte, 512<<20)
	for i := 0; i < len(ballast); i += 4096 {
		ballast[i] = 1 // resident
	}
	ps, err := validator.Preflight(context.Background(), "/nonexistent-file", validator.PreflightOptions{
		Command: []string{"/bin/sh", "-c", "exit 3", "sh"}, MaxMemory: 256 << 20})
	runtime.KeepAlive(ballast)
	require.NoError(t, err)
	require.Len(t, ps, 1)
	require.NotEqual(t, validator.CodePreflightMemory, ps[0].Code, "%v", ps[0])
}

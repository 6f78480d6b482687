package sensor

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/validator"
	"github.com/stretchr/testify/require"
)

func load(t testing.TB, name, capsVersion string) *Program {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "channels", name+".rfch"))
	require.NoError(t, err)
	caps, err := validator.LoadCapabilities(filepath.Join("..", "testdata", "capabilities", "sensor-"+capsVersion+".json"))
	require.NoError(t, err)
	p, err := New(caps).Load(data)
	require.NoError(t, err)
	return p
}

func TestDefaultCapabilitiesMatchTestdata(t *testing.T) {
	c, err := validator.LoadCapabilities(filepath.Join("..", "testdata", "capabilities", "sensor-"+Version+".json"))
	require.NoError(t, err)
	require.Equal(t, c, DefaultCapabilities())
	require.Len(t, c.Template(7).Inputs, 20, "sensor 7.11 supplies 20 IPC inputs")
}

func TestEval(t *testing.T) {
	f := &validator.ChannelFile{TemplateType: 7, TemplateVersion: 1, Fields: make([]validator.FieldType, 20)}
	ins := []validator.Instance{
		{ID: 1, Action: validator.ActionLog, Matchers: []validator.Matcher{{Field: 0, Kind: validator.MatchEqualString, Str: "a"}}},
		{ID: 2, Action: validator.ActionBlock, Matchers: []validator.Matcher{{Field: 0, Kind: validator.MatchPrefix, Str: "ab"}, {Field: 3, Kind: validator.MatchRange, Lo: 10, Hi: 20}}},
		{ID: 3, Action: validator.ActionAlert, Matchers: []validator.Matcher{{Field: 3, Kind: validator.MatchEqualUint, Lo: 7}}},
		{ID: 4, Action: validator.ActionAlert, Matchers: []validator.Matcher{{Field: 1, Kind: validator.MatchPattern, Str: "*\\cmd.exe"}}},
		{ID: 5, Action: validator.ActionLog, Matchers: []validator.Matcher{{Field: 1, Kind: validator.MatchPrefix, Str: strings.Repeat("x", MaxInputLen+1)}}},
	}
	f.Instances = ins
	p, err := New(DefaultCapabilities()).Prepare(f)
	require.NoError(t, err)
	ev := func(tt uint16, vals ...Value) Event { return Event{TemplateType: tt, Fields: vals} }
	tests := []struct {
		name string
		ev   Event
		want Verdict
	}{
		{"no fields", ev(7), Verdict{}},
		{"other template type", ev(1, Value{Str: "a"}), Verdict{}},
		{"equals", ev(7, Value{Str: "a"}), Verdict{Matches: 1, Action: validator.ActionLog, First: 1}},
		{"prefix and range", ev(7, Value{Str: "abc"}, Value{}, Value{}, Value{Num: 15}), Verdict{Matches: 1, Action: validator.ActionBlock, First: 2}},
		{"range edge", ev(7, Value{Str: "ab"}, Value{}, Value{}, Value{Num: 21}), Verdict{}},
		{"equals uint", ev(7, Value{}, Value{}, Value{}, Value{Num: 7}), Verdict{Matches: 1, Action: validator.ActionAlert, First: 3}},
		{"pattern", ev(7, Value{}, Value{Str: `C:\Windows\System32\cmd.exe`}), Verdict{Matches: 1, Action: validator.ActionAlert, First: 4}},
		{"pattern miss", ev(7, Value{}, Value{Str: `C:\cmd.exe.bak`}), Verdict{}},
		{"input truncated to the sensor's buffer", ev(7, Value{}, Value{Str: strings.Repeat("x", MaxInputLen+1)}), Verdict{}},
		{"several match, strongest action", ev(7, Value{Str: "ab"}, Value{Str: `\cmd.exe`}, Value{}, Value{Num: 10}), Verdict{Matches: 2, Action: validator.ActionBlock, First: 2}},
		{"extra fields ignored", ev(7, append([]Value{{Str: "a"}}, make([]Value, 40)...)...), Verdict{Matches: 1, Action: validator.ActionLog, First: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, p.Eval(tt.ev))
		})
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"", "", true}, {"", "a", false}, {"*", "", true}, {"*", "abc", true},
		{"a?c", "abc", true}, {"a?c", "ac", false}, {"*.exe", "x.exe", true}, {"*.exe", "x.exe1", false},
		{"a*b*c", "aXbYc", true}, {"a*b*c", "aXbY", false}, {"**", "x", true},
		{"*a*b", "abab", true}, {"*ab", "aab", true}, {"a*", "b", false}, {"?*?", "a", false},
	}
	for _, tt := range tests {
		var n uint64
		require.Equal(t, tt.want, globBacktrack(tt.p, tt.s, &n), "globBacktrack(%q, %q)", tt.p, tt.s)
		require.Equal(t, tt.want, globLinear(tt.p, tt.s, &n), "globLinear(%q, %q)", tt.p, tt.s)
	}
}

// TestGlobsAgree: the current build's glob accepts exactly what the 7.11
// build's accepts, for every pattern of up to five bytes over a, b, '?'
// and '*' and every string of up to seven bytes over a and b (the C port's
// glob is held to the same in sensor/cinterp).
func TestGlobsAgree(t *testing.T) {
	var strs, pats []string
	var gen func(prefix, alphabet string, n int, out *[]string)
	gen = func(prefix, alphabet string, n int, out *[]string) {
		*out = append(*out, prefix)
		if len(prefix) < n {
			for _, c := range alphabet {
				gen(prefix+string(c), alphabet, n, out)
			}
		}
	}
	gen("", "ab", 7, &strs)
	gen("", "ab?*", 5, &pats)
	require.Len(t, pats, 1+4+16+64+256+1024)
	var n uint64
	for _, p := range pats {
		for _, s := range strs {
			if globBacktrack(p, s, &n) != globLinear(p, s, &n) {
				t.Fatalf("glob(%q, %q): the 7.11 glob says %v, the current one %v", p, s, globBacktrack(p, s, &n), !globBacktrack(p, s, &n))
			}
		}
	}
}

// FuzzGlobsAgree: the same on any pattern and string, the backtracking
// side bounded by MaxPatternStars as Validate bounds it.
func FuzzGlobsAgree(f *testing.F) {
	f.Add("*a*b?c", "xxaxbyc")
	f.Add(costlyPattern, strings.Repeat("a", MaxInputLen))
	f.Fuzz(func(t *testing.T, p, s string) {
		if strings.Count(p, "*") > validator.MaxPatternStars || len(p) > validator.MaxPatternLen {
			return
		}
		s = s[:min(len(s), 64)] // the backtracking side is cubic in it
		var n uint64
		if a, b := globBacktrack(p, s, &n), globLinear(p, s, &n); a != b {
			t.Fatalf("glob(%q, %q): the 7.11 glob says %v, the current one %v", p, s, a, b)
		}
	})
}

// TestInterpreterGlobByVersion: the 7.11 build matches patterns by
// backtracking, 7.12 and later (and interpreters named otherwise) by the
// linear glob.
func TestInterpreterGlobByVersion(t *testing.T) {
	for v, want := range map[string]bool{"7.9": true, "7.11": true, "7.11.3": true, "7.12": false, "7.12.1": false, "8.0": false, "test-3-inputs": false} {
		require.Equal(t, want, backtracks(v), v)
	}
}

// TestCF291Panics is the 2024 failure in miniature: the interpreter loads
// the file (it parses) and panics on the first event that reaches field 21.
func TestCF291Panics(t *testing.T) {
	p := load(t, "cf291-shape", "7.11")
	synth := Synthesize(p.File())
	require.PanicsWithError(t, "runtime error: index out of range [20] with length 20", func() { p.Eval(synth[0]) })
	// The sensor that supplies 21 inputs runs the same file.
	p = load(t, "cf291-shape", "7.12")
	for _, ev := range Synthesize(p.File()) {
		require.NotPanics(t, func() { p.Eval(ev) })
	}
}

// TestSynthesizeReachesEveryInstance checks that each instance's synthesized
// events match that instance: so evaluation reads every field it names.
func TestSynthesizeReachesEveryInstance(t *testing.T) {
	for _, name := range []string{"good-ipc-1001", "good-ipc-1002", "good-ipc-1003", "cf291-wildcard"} {
		t.Run(name, func(t *testing.T) {
			p := load(t, name, "7.11")
			f := p.File()
			synth := Synthesize(f)
			require.Len(t, synth, 2*len(f.Instances))
			for i := range f.Instances {
				one := &validator.ChannelFile{TemplateType: f.TemplateType, Fields: f.Fields, Instances: f.Instances[i : i+1]}
				q, err := New(DefaultCapabilities()).Prepare(one)
				require.NoError(t, err)
				for _, ev := range synth[2*i : 2*i+2] {
					require.Equal(t, 1, q.Eval(ev).Matches, "instance %d (id %d) not reached by %+v", i+1, f.Instances[i].ID, ev)
				}
			}
		})
	}
}

func TestRandomEventsDeterministic(t *testing.T) {
	f := load(t, "good-ipc-1003", "7.11").File()
	a, b, c := RandomEvents(f, 7), RandomEvents(f, 7), RandomEvents(f, 8)
	differ := false
	for range 100 {
		x, y, z := a(), b(), c()
		require.Equal(t, x, y)
		differ = differ || len(x.Fields) != len(z.Fields) || (len(x.Fields) > 0 && x.Fields[0] != z.Fields[0])
	}
	require.True(t, differ, "different seeds gave the same events")
}

func TestRunPreflight(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "channels", "good-ipc-1003.rfch"))
	require.NoError(t, err)
	rep, err := RunPreflight(data, DefaultCapabilities(), 1, 100)
	require.NoError(t, err)
	require.Equal(t, Report{Sensor: "7.11", Instances: 6, Synthesized: 12, Random: 100, Matches: rep.Matches}, rep)
	require.GreaterOrEqual(t, rep.Matches, 12)

	data, err = os.ReadFile(filepath.Join("..", "testdata", "channels", "cf291-shape.rfch"))
	require.NoError(t, err)
	_, err = RunPreflight(data, DefaultCapabilities(), 1, 100)
	var ce *CrashError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "synthesized", ce.Phase)
	require.Equal(t, uint32(291), ce.ID)
	require.Contains(t, string(ce.Stack), "matchAll")
}

// TestPreflightFile: the harness's exit codes and outputs, which
// validator.Preflight reads, for the interpreter the capabilities describe.
func TestPreflightFile(t *testing.T) {
	file := func(name string) string { return filepath.Join("..", "testdata", "channels", name+".rfch") }
	caps712, err := validator.LoadCapabilities(filepath.Join("..", "testdata", "capabilities", "sensor-7.12.json"))
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		caps   *validator.Capabilities
		code   int
		stdout string
		stderr string
	}{
		{"good-ipc-1001", DefaultCapabilities(), ExitPass, `"sensor":"7.11","instances":4,"synthesized_events":8,"random_events":100`, ""},
		{"cf291-shape", DefaultCapabilities(), ExitCrash, "", "preflight: interpreter crashed in instance 1 (id 291) on synthesized event 1: runtime error: index out of range [20] with length 20\nevent: "},
		{"cf291-shape", caps712, ExitPass, `"sensor":"7.12"`, ""},
		{"bad-magic", DefaultCapabilities(), ExitLoad, "", "preflight: sensor: load: validator: BAD_MAGIC"},
		{"missing", DefaultCapabilities(), ExitUsage, "", "preflight: "},
	} {
		t.Run(tc.name+"/"+tc.caps.Sensor, func(t *testing.T) {
			var out, errb bytes.Buffer
			require.Equal(t, tc.code, PreflightFile(file(tc.name), tc.caps, DefaultPreflightSeed, 100, &out, &errb), "stderr: %s", errb.String())
			require.Contains(t, out.String(), tc.stdout)
			require.True(t, strings.HasPrefix(errb.String(), tc.stderr), "stderr: %s", errb.String())
			if tc.code == ExitPass {
				require.Empty(t, errb.String())
			} else {
				require.Empty(t, out.String())
			}
		})
	}
}

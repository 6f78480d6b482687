//go:build cgo

package cinterp

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/validator"
	"github.com/stretchr/testify/require"
)

// channelFiles returns testdata/channels/*.rfch by name.
func channelFiles(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(testfiles.Dir(), "channels", "*.rfch"))
	require.NoError(t, err)
	require.NotEmpty(t, paths, "no channel files in testdata/channels")
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		out[strings.TrimSuffix(filepath.Base(p), ".rfch")] = b
	}
	return out
}

// channelFilesSorted returns the same files in the order of their names.
func channelFilesSorted(t testing.TB) [][]byte {
	files := channelFiles(t)
	var out [][]byte
	for _, name := range slices.Sorted(maps.Keys(files)) {
		out = append(out, files[name])
	}
	return out
}

// goParse is validator.Parse with its error as the C port's code.
func goParse(t testing.TB, data []byte) (*validator.ChannelFile, Code) {
	cf, err := validator.Parse(data)
	if err == nil {
		return cf, OK
	}
	var fe *validator.FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("validator.Parse returned %T (%v), want *FormatError", err, err)
	}
	for c, v := range validatorCodes {
		if v == fe.Code {
			return nil, c
		}
	}
	t.Fatalf("validator.Parse returned code %s, which the C port has no counterpart of", fe.Code)
	return nil, 0
}

// requireSameFile checks that the C port parsed what validator.Parse did.
// (validator.Instance's unexported raw bytes are not compared: the C port
// keeps no such copy.)
func requireSameFile(t testing.TB, want, got *validator.ChannelFile) {
	t.Helper()
	require.Equal(t, want.Channel, got.Channel, "channel")
	require.Equal(t, want.ContentVersion, got.ContentVersion, "content version")
	require.Equal(t, want.TemplateType, got.TemplateType, "template type")
	require.Equal(t, want.TemplateVersion, got.TemplateVersion, "template version")
	require.Equal(t, want.Fields, got.Fields, "fields")
	require.Equal(t, want.Checksum, got.Checksum, "checksum")
	require.Len(t, got.Instances, len(want.Instances), "instances")
	for i := range want.Instances {
		w, g := &want.Instances[i], &got.Instances[i]
		if w.ID != g.ID || w.Action != g.Action {
			t.Fatalf("instance %d: C has id %d action %d, Go id %d action %d", i+1, g.ID, g.Action, w.ID, w.Action)
		}
		require.Equal(t, w.Matchers, g.Matchers, "instance %d matchers", i+1)
	}
}

// goProgram loads cf into the Go interpreter of sensor version v (whose
// glob is that build's: backtracking before sensor.FirstLinearGlob) as a
// sensor that supplies ninputs inputs for its template type.
func goProgram(t testing.TB, cf *validator.ChannelFile, ninputs int, v string) *sensor.Program {
	t.Helper()
	caps := &validator.Capabilities{
		Format:        validator.CapabilitiesFormat,
		Sensor:        fmt.Sprintf("%s-test-%d-inputs", v, ninputs),
		TemplateTypes: []validator.TemplateType{{ID: cf.TemplateType, Versions: []uint16{cf.TemplateVersion}, Inputs: make([]validator.Input, ninputs)}},
	}
	p, err := sensor.New(caps).Prepare(cf)
	require.NoError(t, err)
	return p
}

// goEval evaluates ev, turning Go's index-out-of-range panic (the read
// past the inputs) into panicked; any other panic goes on.
func goEval(p *sensor.Program, ev sensor.Event) (v sensor.Verdict, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			if re, ok := r.(runtime.Error); ok && strings.Contains(re.Error(), "index out of range") {
				panicked = true
				return
			}
			panic(r)
		}
	}()
	return p.Eval(ev), false
}

// goFaultInstance is the index of the instance Go's interpreter panics in
// on ev: instances are evaluated in order and independently, so it is the
// first whose one-instance program panics.
func goFaultInstance(t testing.TB, cf *validator.ChannelFile, ninputs int, ev sensor.Event) int {
	t.Helper()
	for i := range cf.Instances {
		one := *cf
		one.Instances = cf.Instances[i : i+1]
		if _, panicked := goEval(goProgram(t, &one, ninputs, sensor.FirstLinearGlob), ev); panicked {
			return i
		}
	}
	t.Fatal("Go's interpreter panicked on the event, and on none of its instances alone")
	return -1
}

// runStats is what compareRun saw.
type runStats struct {
	faults     int // events both interpreters faulted on
	firstFault int // index of the first, -1 if none
	matches    int // sum of the verdicts' matches
	skipped    int // events too costly for the 7.11 build's glob, not evaluated by it
}

// Step budgets of the 7.11 build's backtracking glob per event
// (goGlobSteps): the tests' and the fuzz target's, where every iteration
// must be quick.
const (
	testBudget = 300_000
	fuzzBudget = 100_000
)

// goGlobSteps counts the calls the 7.11 build's backtracking glob
// (sensor/sensor.go's globBacktrack, copied here with a limit) makes to match s against p, giving up past
// limit. It predicts what an event costs the Go interpreter, nothing more:
// a pattern of many '*' can keep it busy for longer than the universe has
// (Validate refuses such files, PATTERN_TOO_COMPLEX; Parse, and so the
// fuzzer, does not), while the C interpreter's glob, and the current Go
// build's, are quadratic at worst.
func goGlobSteps(p, s string, limit int) int {
	steps := 0
	var glob func(p, s string) bool
	glob = func(p, s string) bool {
		if steps++; steps > limit {
			return true // unwinds every loop above
		}
		for len(p) > 0 {
			switch p[0] {
			case '*':
				for i := 0; i <= len(s); i++ {
					if glob(p[1:], s[i:]) {
						return true
					}
				}
				return false
			case '?':
				if len(s) == 0 {
					return false
				}
			default:
				if len(s) == 0 || s[0] != p[0] {
					return false
				}
			}
			p, s = p[1:], s[1:]
		}
		return len(s) == 0
	}
	glob(p, s)
	return steps
}

// goCostly reports whether evaluating ev could take the 7.11 glob more than
// budget steps: it counts every pattern of the file against its input, as
// if no matcher before it failed.
func goCostly(cf *validator.ChannelFile, ninputs int, ev sensor.Event, budget int) bool {
	if ev.TemplateType != cf.TemplateType {
		return false
	}
	left := budget
	for i := range cf.Instances {
		for _, m := range cf.Instances[i].Matchers {
			if m.Kind != validator.MatchPattern || int(m.Field) >= ninputs {
				continue
			}
			var s string
			if int(m.Field) < len(ev.Fields) {
				s = ev.Fields[m.Field].Str
				s = s[:min(len(s), sensor.MaxInputLen)]
			}
			if left -= goGlobSteps(m.Str, s, left); left < 0 {
				return true
			}
		}
	}
	return false
}

// compareRun evaluates every event in both interpreters of ninputs inputs
// and fails at the first event they disagree on: a different verdict, or
// one faulting (Go's panic, C's RFI_E_FIELD) and not the other, or both
// faulting in different instances. Both programs are used on after a
// fault, as a preflight harness would not, to compare more events. The Go
// interpreter is the current build's (sensor.FirstLinearGlob); the 7.11
// build's, whose glob backtracks, is held to the same verdicts on every
// event that costs its glob at most budget steps (the others are skipped
// for it alone).
func compareRun(t testing.TB, f *File, cf *validator.ChannelFile, ninputs int, events []sensor.Event, budget int) runStats {
	t.Helper()
	st := runStats{firstFault: -1}
	gp := goProgram(t, cf, ninputs, sensor.FirstLinearGlob)
	legacy := goProgram(t, cf, ninputs, "7.11")
	cp, err := f.Prepare(ninputs)
	require.NoError(t, err)
	defer cp.Close()
	for i, ev := range events {
		gv, panicked := goEval(gp, ev)
		cv, ff := cp.Eval(ev)
		if panicked != (ff != nil) {
			t.Fatalf("%d inputs, event %d (%s): Go panicked: %v; C faulted: %v", ninputs, i, describe(ev), panicked, ff)
		}
		if goCostly(cf, ninputs, ev, budget) {
			st.skipped++
		} else if lv, lp := goEval(legacy, ev); lp != panicked || lv != gv {
			t.Fatalf("%d inputs, event %d (%s): the 7.11 build says %+v (panicked: %v), the current one %+v (panicked: %v)", ninputs, i, describe(ev), lv, lp, gv, panicked)
		}
		if panicked {
			if want := goFaultInstance(t, cf, ninputs, ev); ff.Instance != want {
				t.Fatalf("%d inputs, event %d (%s): C faulted in instance %d, Go in %d", ninputs, i, describe(ev), ff.Instance+1, want+1)
			}
			if st.faults == 0 {
				st.firstFault = i
			}
			st.faults++
			continue
		}
		if gv != cv {
			t.Fatalf("%d inputs, event %d (%s): C verdict %+v, Go %+v", ninputs, i, describe(ev), cv, gv)
		}
		st.matches += cv.Matches
	}
	return st
}

// describe summarizes an event for a failure message.
func describe(ev sensor.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "template %d, %d fields:", ev.TemplateType, len(ev.Fields))
	for i, v := range ev.Fields {
		s := v.Str
		if len(s) > 40 {
			s = s[:40] + fmt.Sprintf("...(%d bytes)", len(v.Str))
		}
		fmt.Fprintf(&b, " [%d]{%q %d}", i, s, v.Num)
	}
	return b.String()
}

// TestTestdataParse: every testdata channel file parses to the same code
// in C as in Go, and the ones that parse to the same file and the same
// synthesized events.
func TestTestdataParse(t *testing.T) {
	parsed := 0
	for name, data := range channelFiles(t) {
		t.Run(name, func(t *testing.T) {
			cf, want := goParse(t, data)
			f, got := Parse(data)
			require.Equal(t, want, got, "C parse code (Go: %s)", want.ValidatorCode())
			if got != OK {
				return
			}
			defer f.Close()
			parsed++
			requireSameFile(t, cf, f.ChannelFile())
			synth := sensor.Synthesize(cf)
			csynth := f.Synthesize(-1)
			require.Len(t, csynth, len(synth))
			for i := range synth {
				require.Equal(t, synth[i], csynth[i], "synthesized event %d (instance %d, variant %d)", i, i/2+1, i%2)
			}
		})
	}
	require.GreaterOrEqual(t, parsed, 8, "fewer testdata files parse than expected")
}

// randomCount is how many random events the testdata runs evaluate after
// the synthesized ones.
const randomCount = 200

// TestTestdataVerdicts: the synthesized events and 200 random ones give
// the same verdicts in C as in Go, for sensors 7.11 and 7.12, and the C
// interpreter faults (RFI_E_FIELD) exactly where Go's panics: the 2024
// case, cf291-shape on 7.11, on its first event. The same run through
// sensor.RunPreflight, the preflight harness itself, agrees too.
func TestTestdataVerdicts(t *testing.T) {
	const seed = 1
	caps := map[string]*validator.Capabilities{"7.11": sensor.DefaultCapabilities(), "7.12": testfiles.Capabilities(t, "7.12")}
	faulted := map[string]int{}
	for name, data := range channelFiles(t) {
		cf, code := goParse(t, data)
		if code != OK {
			continue
		}
		for version, c := range caps {
			t.Run(name+"/"+version, func(t *testing.T) {
				tt := c.Template(cf.TemplateType)
				if tt == nil {
					t.Skipf("sensor %s has no template type %d", version, cf.TemplateType)
				}
				f, code := Parse(data)
				require.Equal(t, OK, code)
				defer f.Close()
				synth := sensor.Synthesize(cf)
				next := sensor.RandomEvents(cf, seed)
				events := synth
				for range randomCount {
					events = append(events, next())
				}
				st := compareRun(t, f, cf, len(tt.Inputs), events, testBudget)
				if st.skipped > 0 {
					// bad-pattern-bomb: what Validate refuses, and
					// the 7.11 preflight would take minutes over.
					t.Logf("%d of %d events skipped for the 7.11 build: too costly for its glob", st.skipped, len(events))
					require.Less(t, st.skipped, len(events))
					return
				}

				// The preflight harness runs these very events.
				rep, err := sensor.RunPreflight(data, c, seed, randomCount)
				if st.faults == 0 {
					require.NoError(t, err)
					require.Equal(t, st.matches, rep.Matches)
					return
				}
				faulted[name+"/"+version] = st.firstFault
				var ce *sensor.CrashError
				require.ErrorAs(t, err, &ce)
				at := ce.Event - 1
				if ce.Phase == "random" {
					at += len(synth)
				}
				require.Equal(t, st.firstFault, at, "first faulting event")
				_, ff := mustProgram(t, f, len(tt.Inputs)).Eval(events[at])
				require.NotNil(t, ff)
				require.Equal(t, ce.Instance-1, ff.Instance)
				require.Equal(t, ce.ID, ff.ID)
			})
		}
	}
	// The 2024 case: the first synthesized event reaches field 21 of 20.
	require.Equal(t, 0, faulted["cf291-shape/7.11"], "cf291-shape on sensor 7.11: %v", faulted)
	require.NotContains(t, faulted, "cf291-shape/7.12", "sensor 7.12 supplies field 21")
	require.NotContains(t, faulted, "good-ipc-1003/7.11")
}

// mustProgram prepares f, closed when the test ends.
func mustProgram(t testing.TB, f *File, ninputs int) *Program {
	t.Helper()
	p, err := f.Prepare(ninputs)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	return p
}

// encode builds a channel file of one template type of nfields string
// fields.
func encode(t testing.TB, nfields int, ins ...validator.Instance) []byte {
	t.Helper()
	cf := &validator.ChannelFile{Channel: 291, ContentVersion: 1, TemplateType: 7, TemplateVersion: 1, Fields: make([]validator.FieldType, nfields), Instances: ins}
	for i := range cf.Fields {
		cf.Fields[i] = validator.FieldString
	}
	b, err := validator.Encode(cf)
	require.NoError(t, err)
	return b
}

// TestGlobMatchesGo: the C interpreter's iterative glob accepts exactly
// what both Go globs accept (the current build's and the 7.11 build's
// backtracking one; compareRun runs both), for every pattern of up to four
// bytes over a, b, '?' and '*' and every string of up to six bytes over a
// and b.
func TestGlobMatchesGo(t *testing.T) {
	var strs []string
	for n := 0; n <= 6; n++ {
		for bits := 0; bits < 1<<n; bits++ {
			s := make([]byte, n)
			for i := range s {
				s[i] = "ab"[bits>>i&1]
			}
			strs = append(strs, string(s))
		}
	}
	var pats []string
	var gen func(prefix string)
	gen = func(prefix string) {
		pats = append(pats, prefix)
		if len(prefix) < 4 {
			for _, c := range "ab?*" {
				gen(prefix + string(c))
			}
		}
	}
	gen("")
	require.Len(t, pats, 1+4+16+64+256)
	// One field per pattern, and MaxFields patterns per file.
	for start := 0; start < len(pats); start += validator.MaxFields {
		chunk := pats[start:min(start+validator.MaxFields, len(pats))]
		ins := make([]validator.Instance, len(chunk))
		for i, p := range chunk {
			ins[i] = validator.Instance{ID: uint32(start + i + 1), Action: validator.ActionLog,
				Matchers: []validator.Matcher{{Field: uint16(i), Kind: validator.MatchPattern, Str: p}}}
		}
		data := encode(t, len(ins), ins...)
		cf, code := goParse(t, data)
		require.Equal(t, OK, code)
		f, code := Parse(data)
		require.Equal(t, OK, code)
		var events []sensor.Event
		for _, s := range strs {
			// Every field the same string: the matches count how many
			// of the chunk's patterns accept it.
			ev := sensor.Event{TemplateType: 7, Fields: make([]sensor.Value, len(ins))}
			for i := range ev.Fields {
				ev.Fields[i].Str = s
			}
			events = append(events, ev)
			// And the string in one field only, the others holding
			// one that no pattern with a literal (a or b) accepts.
			for i := range ins {
				one := sensor.Event{TemplateType: 7, Fields: make([]sensor.Value, len(ins))}
				for j := range one.Fields {
					one.Fields[j].Str = "\x00never"
				}
				one.Fields[i].Str = s
				events = append(events, one)
			}
		}
		st := compareRun(t, f, cf, len(ins), events, testBudget)
		require.Zero(t, st.skipped)
		require.Zero(t, st.faults)
		require.Positive(t, st.matches)
		f.Close()
	}
}

// TestParseShortAndOdd: the header checks on inputs the testdata files do
// not cover, in C as in Go.
func TestParseShortAndOdd(t *testing.T) {
	good := channelFiles(t)["good-ipc-1001"]
	require.NotEmpty(t, good)
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := map[string][]byte{
		"empty":             {},
		"R":                 []byte("R"),
		"RFC":               []byte("RFC"),
		"RX":                []byte("RX"),
		"magic only":        []byte("RFCH"),
		"header only":       good[:32],
		"63 bytes":          good[:63],
		"format 2":          mut(func(b []byte) []byte { b[4] = 2; return b }),
		"flags":             mut(func(b []byte) []byte { b[7] = 1; return b }),
		"reserved":          mut(func(b []byte) []byte { b[22] = 1; return b }),
		"body length huge":  mut(func(b []byte) []byte { b[31] = 0xff; return b }),
		"body length short": mut(func(b []byte) []byte { b[28]--; return b }),
		"one byte more":     append(append([]byte(nil), good...), 0),
		"checksum":          mut(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }),
		"body byte":         mut(func(b []byte) []byte { b[40] ^= 1; return b }),
		"too large":         make([]byte, validator.MaxFileSize+1),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			_, want := goParse(t, data)
			f, got := Parse(data)
			require.Equal(t, want, got)
			if f != nil {
				f.Close()
			}
		})
	}
}

// TestCRandomEvents: the C generator is deterministic in its seed, makes
// the odd events it should (other template types, short and long field
// lists), and its events give the same verdicts in C as in Go.
func TestCRandomEvents(t *testing.T) {
	const n = 500
	for name, data := range channelFiles(t) {
		cf, code := goParse(t, data)
		if code != OK {
			continue
		}
		t.Run(name, func(t *testing.T) {
			f, code := Parse(data)
			require.Equal(t, OK, code)
			defer f.Close()
			a, b, c := f.RandomEvents(7, n), f.RandomEvents(7, n), f.RandomEvents(8, n)
			require.Equal(t, a, b, "the same seed gave different events")
			require.NotEqual(t, a, c, "different seeds gave the same events")
			other, short, long, operand := 0, 0, 0, 0
			nums := map[uint64]bool{}
			for _, in := range cf.Instances {
				for _, m := range in.Matchers {
					if m.Kind.OperandType() == validator.FieldUint {
						for _, x := range []uint64{m.Lo, m.Hi} {
							nums[x-1], nums[x], nums[x+1] = true, true, true
						}
					}
				}
			}
			for _, ev := range a {
				switch {
				case ev.TemplateType != cf.TemplateType:
					other++
				case len(ev.Fields) < len(cf.Fields):
					short++
				case len(ev.Fields) > len(cf.Fields):
					long++
				}
				for _, v := range ev.Fields {
					if len(v.Str) > RandMaxStr && !isOperandPrefix(cf, v.Str) {
						t.Fatalf("a %d-byte string, longer than RFI_RAND_MAX_STR, is no operand cut short", len(v.Str))
					}
					if (len(v.Str) > 0 && isOperand(cf, v.Str)) || nums[v.Num] {
						operand++
					}
				}
			}
			require.Positive(t, other, "no event of another template type")
			require.Positive(t, short, "no event with fewer fields than declared")
			require.Positive(t, long, "no event with more fields than declared")
			if len(cf.Instances) > 0 {
				require.Positive(t, operand, "no value drawn from the file's operands")
			}
			for _, ninputs := range []int{len(cf.Fields) - 1, len(cf.Fields), len(cf.Fields) + 1} {
				compareRun(t, f, cf, ninputs, a, testBudget)
			}
		})
	}
}

// RandMaxStr is RFI_RAND_MAX_STR.
const RandMaxStr = sensor.MaxInputLen + 16

func isOperand(cf *validator.ChannelFile, s string) bool {
	return anyOperand(cf, func(op string) bool { return op == s })
}

func isOperandPrefix(cf *validator.ChannelFile, s string) bool {
	return anyOperand(cf, func(op string) bool { return strings.HasPrefix(op, s) })
}

func anyOperand(cf *validator.ChannelFile, ok func(string) bool) bool {
	for _, in := range cf.Instances {
		for _, m := range in.Matchers {
			if m.Kind.OperandType() == validator.FieldString && ok(m.Str) {
				return true
			}
		}
	}
	return false
}

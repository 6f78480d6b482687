package sensor

import (
	_ "embed"
	"fmt"
	"sync"

	"github.com/ringfence/ringfence/compat"
	"github.com/ringfence/ringfence/validator"
)

// MaxInputLen is the size of the sensor's string input buffers: longer event
// strings are truncated to it before the interpreter sees them.
const MaxInputLen = 256

// Version is the interpreter version of the reference sensor; its built-in
// capability manifest is DefaultCapabilities.
const Version = "7.11"

//go:embed caps/sensor-7.11.json
var defaultCapsJSON []byte

var defaultCaps = sync.OnceValue(func() *validator.Capabilities {
	c, err := validator.ParseCapabilities(defaultCapsJSON)
	if err != nil {
		panic("sensor: built-in capability manifest: " + err.Error())
	}
	return c
})

// DefaultCapabilities returns the capability manifest built into the
// reference sensor (version 7.11). Callers must not modify it.
func DefaultCapabilities() *validator.Capabilities { return defaultCaps() }

// Value is one field of an event.
type Value struct {
	Str string
	Num uint64
}

// Event is something the agent observed: a template type and the raw fields
// the world offers. The sensor decides how many of them reach the
// interpreter.
type Event struct {
	TemplateType uint16
	Fields       []Value
}

// Sensor is an interpreter of one version, described by its capabilities.
type Sensor struct {
	caps *validator.Capabilities
}

// New returns a sensor that supplies what caps describes.
func New(caps *validator.Capabilities) *Sensor { return &Sensor{caps: caps} }

// Program is a channel file loaded into the interpreter. It is not safe for
// concurrent use: it reuses one input array, as a driver's per-CPU buffer
// would.
type Program struct {
	file   *validator.ChannelFile
	inputs []Value
	// cur is the index of the instance being evaluated, so that a crash
	// report can name it.
	cur int
	// glob is the pattern matcher of the sensor's build; steps counts
	// what it did, a cost that does not depend on the machine.
	glob  func(p, s string, steps *uint64) bool
	steps uint64
}

// Verdict is the outcome of evaluating one event.
type Verdict struct {
	// Matches is how many instances matched.
	Matches int
	// Action is the strongest action of the matching instances, 0 if none.
	Action validator.Action
	// First is the id of the first matching instance.
	First uint32
}

// Load parses a channel file and prepares it for evaluation. Like a real
// interpreter it checks that the file is intact and that it knows the
// template type, and nothing else: whether every field the content
// references is supplied is the validator's job, not the loader's.
func (s *Sensor) Load(data []byte) (*Program, error) {
	f, err := validator.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("sensor: load: %w", err)
	}
	return s.Prepare(f)
}

// Prepare loads an already parsed channel file.
func (s *Sensor) Prepare(f *validator.ChannelFile) (*Program, error) {
	tt := s.caps.Template(f.TemplateType)
	if tt == nil {
		return nil, fmt.Errorf("sensor: load: sensor %s has no template type %d", s.caps.Sensor, f.TemplateType)
	}
	glob := globLinear
	if backtracks(s.caps.Sensor) {
		glob = globBacktrack
	}
	return &Program{file: f, inputs: make([]Value, len(tt.Inputs)), glob: glob}, nil
}

// File returns the loaded channel file.
func (p *Program) File() *validator.ChannelFile { return p.file }

// Eval runs every template instance against ev. Events of other template
// types are ignored.
//
// The input array holds exactly what the sensor supplies; each matcher reads
// inputs[m.Field] directly. A matcher on a field past the array panics.
func (p *Program) Eval(ev Event) Verdict {
	var v Verdict
	if ev.TemplateType != p.file.TemplateType {
		return v
	}
	in := p.inputs
	for i := range in {
		in[i] = Value{}
		if i < len(ev.Fields) {
			in[i] = ev.Fields[i]
			if len(in[i].Str) > MaxInputLen {
				in[i].Str = in[i].Str[:MaxInputLen]
			}
		}
	}
	for i := range p.file.Instances {
		p.cur = i
		inst := &p.file.Instances[i]
		if !matchAll(inst.Matchers, in, p.glob, &p.steps) {
			continue
		}
		if v.Matches == 0 {
			v.First = inst.ID
		}
		v.Matches++
		v.Action = max(v.Action, inst.Action)
	}
	return v
}

// matchAll reports whether every matcher of ms accepts its input; patterns
// are matched by glob, which counts its steps into *steps.
func matchAll(ms []validator.Matcher, in []Value, glob func(p, s string, steps *uint64) bool, steps *uint64) bool {
	for _, m := range ms {
		x := in[m.Field] // the 2024 read: no bounds check against what was supplied
		switch m.Kind {
		case validator.MatchEqualString:
			if x.Str != m.Str {
				return false
			}
		case validator.MatchEqualUint:
			if x.Num != m.Lo {
				return false
			}
		case validator.MatchPrefix:
			if len(x.Str) < len(m.Str) || x.Str[:len(m.Str)] != m.Str {
				return false
			}
		case validator.MatchRange:
			if x.Num < m.Lo || x.Num > m.Hi {
				return false
			}
		case validator.MatchPattern:
			if !glob(m.Str, x.Str, steps) {
				return false
			}
		}
	}
	return true
}

// FirstLinearGlob is the first interpreter version that matches patterns
// in quadratic time at worst (globLinear). The ones before it (the 7.11
// build and older) match by plain backtracking (globBacktrack), as they
// shipped. Both accept exactly the same strings: content means the same on
// both, and costs the older ones far more on patterns whose stars keep
// failing (TestLegacyGlobCost counts how much, BenchmarkLegacyGlobCost
// times it).
const FirstLinearGlob = "7.12"

// backtracks reports whether an interpreter whose capability manifest says
// sensor version v is one of the builds that match patterns by
// backtracking. The version names the interpreter, so an agent started with
// an older manifest behaves as that older build did.
func backtracks(v string) bool { return compat.Compare(v, FirstLinearGlob) < 0 }

// globBacktrack matches s against pattern p of literal bytes, '?' and '*'
// by plain backtracking, as small interpreters do (the 7.11 build's
// matcher, kept as it was). Its cost grows as len(s) to the power of the
// '*' count, which is why validator.MaxPatternStars exists. It adds the
// steps it took (calls and byte comparisons) to *steps.
func globBacktrack(p, s string, steps *uint64) bool {
	*steps++
	for len(p) > 0 {
		*steps++
		switch p[0] {
		case '*':
			for i := 0; i <= len(s); i++ {
				if globBacktrack(p[1:], s[i:], steps) {
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

// globLinear matches s against pattern p as globBacktrack does, without
// recursion: it keeps only the last '*' seen and, on a mismatch, retries it
// one byte further along s (the C port's glob, sensor/c/rfinterp.c). With
// only '?' and '*', a later '*' can absorb whatever an earlier one would
// have had to, so going back to the last star alone loses no match. At most
// len(p) steps per byte of s: O(len(p) * len(s)), with constant stack,
// whatever the stars. It adds the steps it took to *steps.
func globLinear(p, s string, steps *uint64) bool {
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(s) {
		*steps++
		switch {
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case star >= 0:
			// The last '*' takes one more byte; retry after it.
			mark++
			pi, si = star+1, mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		*steps++
		pi++
	}
	return pi == len(p)
}

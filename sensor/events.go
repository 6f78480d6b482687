package sensor

import (
	"math"
	"math/rand/v2"
	"strings"

	"github.com/ringfence/ringfence/validator"
)

// Synthesize returns events built to reach every referenced field of every
// instance of f: for each instance, events whose values satisfy each of its
// matchers in turn, so that the interpreter's short-circuit evaluation reads
// every field the instance names. Random events almost never get that far
// on instances with many conditions; this is why preflight synthesizes first.
//
// Events carry as many fields as f declares, the content's view of the
// world; the sensor then supplies only what it supplies.
func Synthesize(f *validator.ChannelFile) []Event {
	out := make([]Event, 0, 2*len(f.Instances))
	for i := range f.Instances {
		for variant := range 2 {
			ev := Event{TemplateType: f.TemplateType, Fields: make([]Value, len(f.Fields))}
			if variant == 1 {
				for fi := range ev.Fields {
					ev.Fields[fi] = Value{Str: strings.Repeat("W", MaxInputLen+8), Num: math.MaxUint64}
				}
			}
			for _, m := range f.Instances[i].Matchers {
				ev.Fields[m.Field] = satisfy(m, variant)
			}
			out = append(out, ev)
		}
	}
	return out
}

// satisfy returns a value m accepts: variant 0 the smallest, variant 1 one at
// the other edge.
func satisfy(m validator.Matcher, variant int) Value {
	switch m.Kind {
	case validator.MatchEqualString:
		return Value{Str: m.Str}
	case validator.MatchEqualUint:
		return Value{Num: m.Lo}
	case validator.MatchPrefix:
		if variant == 1 {
			return Value{Str: m.Str + "\\tail"}
		}
		return Value{Str: m.Str}
	case validator.MatchRange:
		if variant == 1 {
			return Value{Num: m.Hi}
		}
		return Value{Num: m.Lo}
	case validator.MatchPattern:
		fill := ""
		if variant == 1 {
			fill = "xy"
		}
		var b strings.Builder
		for i := 0; i < len(m.Str); i++ {
			switch m.Str[i] {
			case '*':
				b.WriteString(fill)
			case '?':
				b.WriteByte('a')
			default:
				b.WriteByte(m.Str[i])
			}
		}
		return Value{Str: b.String()}
	}
	return Value{}
}

// RandomEvents returns a deterministic generator of events for f: values
// drawn from the file's own operands (exact, cut short, extended, off by
// one) mixed with random strings and edge numbers, and now and then another
// template type or a short field list.
func RandomEvents(f *validator.ChannelFile, seed uint64) func() Event {
	rng := rand.New(rand.NewPCG(seed, 0x52464348))
	var strs []string
	var nums []uint64
	for i := range f.Instances {
		for _, m := range f.Instances[i].Matchers {
			if m.Kind.OperandType() == validator.FieldString {
				strs = append(strs, m.Str)
			} else {
				nums = append(nums, m.Lo, m.Hi)
			}
		}
	}
	const alphabet = "ab*?\\.:pipe\x00\xff"
	randStr := func() string {
		if len(strs) > 0 && rng.IntN(3) > 0 {
			s := strs[rng.IntN(len(strs))]
			switch rng.IntN(4) {
			case 0:
				return s
			case 1:
				return s[:rng.IntN(len(s)+1)]
			case 2:
				return s + string(alphabet[rng.IntN(len(alphabet))])
			default:
				return strings.Repeat(s, 1+rng.IntN(8))
			}
		}
		b := make([]byte, rng.IntN(MaxInputLen+16))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	randNum := func() uint64 {
		if len(nums) > 0 && rng.IntN(2) == 0 {
			return nums[rng.IntN(len(nums))] + uint64(rng.IntN(3)) - 1
		}
		switch rng.IntN(3) {
		case 0:
			return rng.Uint64()
		case 1:
			return uint64(rng.IntN(1024))
		}
		return math.MaxUint64
	}
	return func() Event {
		ev := Event{TemplateType: f.TemplateType}
		if rng.IntN(16) == 0 {
			ev.TemplateType = uint16(rng.IntN(16))
		}
		n := len(f.Fields)
		if rng.IntN(8) == 0 {
			n = rng.IntN(n + 3)
		}
		ev.Fields = make([]Value, n)
		for i := range ev.Fields {
			ev.Fields[i] = Value{Str: randStr(), Num: randNum()}
		}
		return ev
	}
}

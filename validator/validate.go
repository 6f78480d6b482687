package validator

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"slices"
	"strings"
)

// DefaultMaxProblems bounds the problems Validate lists for one file; a file
// of a million broken instances gets a readable report, not a million lines.
const DefaultMaxProblems = 1000

// CodeMoreProblems stands for the problems left out past Options.MaxProblems.
const CodeMoreProblems Code = "MORE_PROBLEMS"

// Installed is the content a host has installed for a channel.
type Installed struct {
	Channel        uint32
	ContentVersion uint32
}

// Options tune Validate. The zero value is ready to use.
type Options struct {
	// Installed, when set, is the content installed for the file's
	// channel: a file of the same channel must carry a newer version.
	Installed *Installed
	// MaxProblems bounds the problems reported (DefaultMaxProblems if 0).
	MaxProblems int
}

// Validate parses data and checks it against the capabilities of the
// installed interpreter. It returns the parsed file (nil when data does not
// parse) and every problem found, in file order. A file is accepted when no
// problem has SeverityError; caps must not be nil.
//
// Validate is what would have stopped Channel File 291: a matcher on an input
// field that caps does not supply is CodeFieldNotSupplied, an error, for
// every instance that has one.
func Validate(data []byte, caps *Capabilities, opts Options) (*ChannelFile, Problems) {
	f, err := Parse(data)
	if err != nil {
		var fe *FormatError
		if errors.As(err, &fe) {
			return nil, Problems{fe.Problem()}
		}
		return nil, Problems{{Code: CodeTruncated, Severity: SeverityError, Offset: -1, Message: err.Error()}}
	}
	return f, Check(f, caps, opts)
}

// Check runs Validate's semantic checks on a file that is already parsed (or
// built in code). It does not repeat Parse's structural checks.
func Check(f *ChannelFile, caps *Capabilities, opts Options) Problems {
	r := report{max: opts.MaxProblems}
	if r.max <= 0 {
		r.max = DefaultMaxProblems
	}
	nFields := len(f.Fields)
	declared := f.Fields
	var supplied []Input
	var tt *TemplateType
	switch {
	case caps == nil:
		r.addAt(CodeUnknownTemplate, SeverityError, 0, 0, "no capability manifest given: cannot check the file against an interpreter")
	default:
		if !caps.LoadsChannel(f.Channel) {
			r.addAt(CodeChannelNotLoaded, SeverityError, 0, 0, "channel %d is not one sensor %s loads (its manifest lists %v)", f.Channel, caps.Sensor, caps.Channels)
		}
		tt = caps.Template(f.TemplateType)
		if tt == nil {
			r.addAt(CodeUnknownTemplate, SeverityError, 0, 0, "template type id %d is unknown to sensor %s; it cannot evaluate this file", f.TemplateType, caps.Sensor)
			break
		}
		supplied = tt.Inputs
		if !tt.Supports(f.TemplateVersion) {
			r.addAt(CodeTemplateVersion, SeverityError, 0, 0, "template type %s (id %d) version %d is not supported by sensor %s (supports %s)",
				tt.Name, tt.ID, f.TemplateVersion, caps.Sensor, tt.versionList())
		}
		if nFields > len(supplied) {
			r.addAt(CodeFieldCountMismatch, SeverityWarning, 0, 0,
				"template type %s (id %d) declares %d fields but sensor %s supplies %d; any matcher on %s is rejected, wildcards there are never read",
				tt.Name, tt.ID, nFields, caps.Sensor, len(supplied), fieldSpan(len(supplied)+1, nFields))
		}
		for i := 0; i < min(nFields, len(supplied)); i++ {
			if declared[i] != supplied[i].Type {
				r.addAt(CodeFieldTypeMismatch, SeverityError, 0, i+1, "field %d (%s): declared %s but sensor %s supplies %s",
					i+1, supplied[i].Name, declared[i], caps.Sensor, supplied[i].Type)
			}
		}
	}
	if opts.Installed != nil && opts.Installed.Channel == f.Channel && f.ContentVersion <= opts.Installed.ContentVersion {
		r.addAt(CodeVersionNotMonotonic, SeverityError, 0, 0, "content version %d of channel %d is not newer than the installed version %d",
			f.ContentVersion, f.Channel, opts.Installed.ContentVersion)
	}

	// keys[i] is a hash of instance i's matchers; checkDuplicates uses its
	// high 44 bits (MaxInstances is 1<<20, so an index fits in the rest).
	keys := make([]uint64, len(f.Instances))
	seed := maphash.MakeSeed()
	var key []byte
	for i := range f.Instances {
		in := &f.Instances[i]
		idx := i + 1
		trivial := true
		for _, m := range in.Matchers {
			fn := int(m.Field) + 1
			if tt != nil && int(m.Field) >= len(supplied) {
				r.addAt(CodeFieldNotSupplied, SeverityError, idx, fn, "instance %d, field %d: template type %s (id %d) declares %d fields but sensor %s supplies %d",
					idx, fn, tt.Name, tt.ID, nFields, caps.Sensor, len(supplied))
				trivial = false
				continue
			}
			if want := m.Kind.OperandType(); want != declared[m.Field] {
				r.addAt(CodeMatcherType, SeverityError, idx, fn, "instance %d, field %d: %s matcher applies to %s fields; field %d is %s",
					idx, fn, m.Kind, want, fn, declared[m.Field])
			}
			switch m.Kind {
			case MatchRange:
				if m.Lo > m.Hi {
					r.addAt(CodeBadRange, SeverityError, idx, fn, "instance %d, field %d: range [%d, %d] is empty and never matches", idx, fn, m.Lo, m.Hi)
				}
			case MatchPattern:
				if n := strings.Count(m.Str, "*"); n > MaxPatternStars {
					r.addAt(CodePatternTooComplex, SeverityError, idx, fn, "instance %d, field %d: pattern %q has %d '*' wildcards; the interpreter allows %d (matching cost grows as input length to the power of the wildcards)",
						idx, fn, clip(m.Str), n, MaxPatternStars)
				}
			}
			if !matchesAll(m) {
				trivial = false
			}
		}
		if trivial {
			r.addAt(CodeMatchesEverything, SeverityWarning, idx, 0, "instance %d (id %d) matches every event of its template type", idx, in.ID)
		}

		raw := in.raw
		if raw == "" {
			key = appendMatchers(key[:0], in.Matchers, nFields)
			raw = string(key)
		}
		keys[i] = maphash.String(seed, raw)
	}
	checkDuplicates(f, keys, &r)
	checkIDs(f.Instances, &r)
	return r.done()
}

const indexMask = 1<<20 - 1

// checkDuplicates reports instances whose matchers repeat an earlier
// instance's: the same action is a warning, another action a contradiction.
//
// keys[i] is instance i's matcher hash with its low 20 bits replaced by i.
// They go into an open-addressing table (linear probing, at most half full)
// in file order, so each instance meets every earlier instance with the same
// hash bits on its probe path. Exact equality of the matcher bytes decides.
// A Go map would need a lookup and an insert per instance, and is about four
// times slower here (BenchmarkValidate1MiB).
func checkDuplicates(f *ChannelFile, keys []uint64, r *report) {
	nFields := len(f.Fields)
	size := 1 << bits.Len(uint(2*len(keys)))
	table := make([]uint64, size) // 0 = empty
	shift := 64 - bits.Len(uint(size-1))
	for i, k := range keys {
		in := &f.Instances[i]
		idx := i + 1
		// Store the index as i+1 so that an empty slot (0) is never a key.
		stored := k&^indexMask | uint64(idx)
		slot := int(k >> shift) // shift is 64 only for an empty table
		for ; table[slot] != 0; slot = (slot + 1) & (size - 1) {
			if table[slot]&^indexMask != k&^indexMask {
				continue
			}
			j := int(table[slot] & indexMask)
			first := &f.Instances[j-1]
			if rawOf(in, nFields) != rawOf(first, nFields) {
				continue // a hash collision, not a duplicate
			}
			if first.Action == in.Action {
				r.addAt(CodeDuplicateInstance, SeverityWarning, idx, 0, "instance %d (id %d) repeats instance %d (id %d): same matchers, same action", idx, in.ID, j, first.ID)
			} else {
				r.addAt(CodeContradictory, SeverityError, idx, 0, "instance %d (id %d) has the same matchers as instance %d (id %d) but action %s instead of %s; the outcome would depend on evaluation order",
					idx, in.ID, j, first.ID, in.Action, first.Action)
			}
			stored = 0 // reported against the first; do not insert again
			break
		}
		if stored != 0 {
			table[slot] = stored
		}
	}
}

// checkIDs reports instances whose id an earlier instance already uses.
// Content pipelines emit ids in ascending order; that case needs no map.
func checkIDs(ins []Instance, r *report) {
	ascending := true
	for i := 1; i < len(ins) && ascending; i++ {
		ascending = ins[i].ID > ins[i-1].ID
	}
	if ascending {
		return
	}
	first := make(map[uint32]int, len(ins))
	for i := range ins {
		idx := i + 1
		if j, dup := first[ins[i].ID]; dup {
			r.addAt(CodeDuplicateID, SeverityError, idx, 0, "instance %d: id %d is already used by instance %d", idx, ins[i].ID, j)
		} else {
			first[ins[i].ID] = idx
		}
	}
}

func rawOf(in *Instance, nFields int) string {
	if in.raw != "" {
		return in.raw
	}
	return string(appendMatchers(nil, in.Matchers, nFields))
}

// matchesAll reports whether m accepts every value of its type.
func matchesAll(m Matcher) bool {
	switch m.Kind {
	case MatchPrefix:
		return m.Str == ""
	case MatchPattern:
		return m.Str != "" && strings.Trim(m.Str, "*") == ""
	case MatchRange:
		return m.Lo == 0 && m.Hi == math.MaxUint64
	}
	return false
}

func fieldSpan(from, to int) string {
	if from == to {
		return fmt.Sprintf("field %d", from)
	}
	return fmt.Sprintf("fields %d..%d", from, to)
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

type report struct {
	ps      Problems
	max     int
	omitted int
	omitErr bool
}

func (r *report) addAt(code Code, sev Severity, inst, field int, format string, args ...any) {
	if len(r.ps) >= r.max {
		r.omitted++
		r.omitErr = r.omitErr || sev == SeverityError
		return
	}
	r.ps = append(r.ps, Problem{Code: code, Severity: sev, Instance: inst, Field: field, Offset: -1, Message: fmt.Sprintf(format, args...)})
}

// done returns the problems in file order: file-level ones first, then by
// instance.
func (r *report) done() Problems {
	slices.SortStableFunc(r.ps, func(a, b Problem) int { return a.Instance - b.Instance })
	if r.omitted > 0 {
		sev := SeverityWarning
		if r.omitErr {
			sev = SeverityError
		}
		r.ps = append(r.ps, Problem{Code: CodeMoreProblems, Severity: sev, Offset: -1,
			Message: fmt.Sprintf("%d more problems not listed (limit %d)", r.omitted, r.max)})
	}
	return r.ps
}

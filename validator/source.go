package validator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// MaxSourceSize bounds a JSON channel-file description.
const MaxSourceSize = 64 << 20

// ErrSource is returned (wrapped) for a JSON description that cannot be read.
var ErrSource = errors.New("validator: bad channel source")

// source is the JSON description of a channel file (docs/channel-file-format.md,
// "JSON description"). Field numbers in it are 1-based, as content engineers
// count them; wildcards are left out.
type source struct {
	Channel         uint32           `json:"channel"`
	ContentVersion  uint32           `json:"content_version"`
	TemplateType    uint16           `json:"template_type"`
	TemplateVersion uint16           `json:"template_version"`
	Fields          []FieldType      `json:"fields"`
	Instances       []sourceInstance `json:"instances"`
}

type sourceInstance struct {
	ID     uint32          `json:"id"`
	Action string          `json:"action"`
	Match  []sourceMatcher `json:"match"`
}

type sourceMatcher struct {
	Field   int        `json:"field"`
	Eq      *string    `json:"eq,omitempty"`
	EqUint  *uint64    `json:"eq_uint,omitempty"`
	Prefix  *string    `json:"prefix,omitempty"`
	Range   *[2]uint64 `json:"range,omitempty"`
	Pattern *string    `json:"pattern,omitempty"`
}

// DecodeSource builds a ChannelFile from its JSON description. Unknown
// members, matchers with no or several operands, and field numbers out of
// order are errors. The result still has to pass Encode's limits.
func DecodeSource(data []byte) (*ChannelFile, error) {
	if len(data) > MaxSourceSize {
		return nil, fmt.Errorf("%w: %d bytes; the limit is %d", ErrSource, len(data), MaxSourceSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var src source
	if err := dec.Decode(&src); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSource, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrSource)
	}
	f := &ChannelFile{
		Channel: src.Channel, ContentVersion: src.ContentVersion,
		TemplateType: src.TemplateType, TemplateVersion: src.TemplateVersion,
		Fields: src.Fields, Instances: make([]Instance, len(src.Instances)),
	}
	for i, si := range src.Instances {
		in := &f.Instances[i]
		in.ID = si.ID
		a, ok := parseAction(si.Action)
		if !ok {
			return nil, fmt.Errorf("%w: instance %d (id %d): action %q; use log, alert or block", ErrSource, i+1, si.ID, si.Action)
		}
		in.Action = a
		for _, sm := range si.Match {
			m, err := sm.matcher()
			if err != nil {
				return nil, fmt.Errorf("%w: instance %d (id %d), field %d: %v", ErrSource, i+1, si.ID, sm.Field, err)
			}
			if n := len(in.Matchers); n > 0 && in.Matchers[n-1].Field >= m.Field {
				return nil, fmt.Errorf("%w: instance %d (id %d): field %d listed after field %d; list each field once, in ascending order", ErrSource, i+1, si.ID, sm.Field, in.Matchers[n-1].Field+1)
			}
			in.Matchers = append(in.Matchers, m)
		}
	}
	return f, nil
}

func (sm sourceMatcher) matcher() (Matcher, error) {
	if sm.Field < 1 || sm.Field > MaxFields {
		return Matcher{}, fmt.Errorf("field number must be 1..%d", MaxFields)
	}
	m := Matcher{Field: uint16(sm.Field - 1)}
	n := 0
	if sm.Eq != nil {
		m.Kind, m.Str, n = MatchEqualString, *sm.Eq, n+1
	}
	if sm.EqUint != nil {
		m.Kind, m.Lo, n = MatchEqualUint, *sm.EqUint, n+1
	}
	if sm.Prefix != nil {
		m.Kind, m.Str, n = MatchPrefix, *sm.Prefix, n+1
	}
	if sm.Range != nil {
		m.Kind, m.Lo, m.Hi, n = MatchRange, sm.Range[0], sm.Range[1], n+1
	}
	if sm.Pattern != nil {
		m.Kind, m.Str, n = MatchPattern, *sm.Pattern, n+1
	}
	if n != 1 {
		return Matcher{}, errors.New("give exactly one of eq, eq_uint, prefix, range, pattern (leave wildcards out)")
	}
	return m, nil
}

// EncodeSource writes the JSON description of f, indented, one matcher per
// line. DecodeSource of the result gives back f (less its Checksum).
func EncodeSource(f *ChannelFile) ([]byte, error) {
	src := source{
		Channel: f.Channel, ContentVersion: f.ContentVersion,
		TemplateType: f.TemplateType, TemplateVersion: f.TemplateVersion,
		Fields: f.Fields, Instances: make([]sourceInstance, len(f.Instances)),
	}
	for i, in := range f.Instances {
		si := sourceInstance{ID: in.ID, Action: in.Action.String(), Match: make([]sourceMatcher, 0, len(in.Matchers))}
		for _, m := range in.Matchers {
			sm := sourceMatcher{Field: int(m.Field) + 1}
			switch m.Kind {
			case MatchEqualString:
				sm.Eq = &m.Str
			case MatchEqualUint:
				sm.EqUint = &m.Lo
			case MatchPrefix:
				sm.Prefix = &m.Str
			case MatchRange:
				sm.Range = &[2]uint64{m.Lo, m.Hi}
			case MatchPattern:
				sm.Pattern = &m.Str
			default:
				return nil, fmt.Errorf("%w: instance %d: matcher kind %d has no JSON form", ErrEncode, i+1, m.Kind)
			}
			si.Match = append(si.Match, sm)
		}
		src.Instances[i] = si
	}
	// Hand-laid so a description reads (and diffs) one instance per line.
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\n  \"channel\": %d,\n  \"content_version\": %d,\n  \"template_type\": %d,\n  \"template_version\": %d,\n",
		src.Channel, src.ContentVersion, src.TemplateType, src.TemplateVersion)
	fields, err := compactJSON(src.Fields)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEncode, err)
	}
	fmt.Fprintf(&b, "  \"fields\": %s,\n  \"instances\": [", fields)
	for i, si := range src.Instances {
		line, err := compactJSON(si)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrEncode, err)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n    ")
		b.Write(line)
	}
	if len(src.Instances) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("]\n}\n")
	return b.Bytes(), nil
}

// compactJSON marshals v on one line, without HTML escaping.
func compactJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func parseAction(s string) (Action, bool) {
	for a := ActionLog; a <= maxAction; a++ {
		if a.String() == s {
			return a, true
		}
	}
	return 0, false
}

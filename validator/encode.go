package validator

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrEncode is returned (wrapped) by Encode for a ChannelFile that has no
// valid encoding: counts or lengths past their limits, unknown types, or
// matchers out of order.
var ErrEncode = errors.New("validator: cannot encode channel file")

// Encode returns the canonical encoding of f and sets f.Checksum. It refuses
// anything Parse would refuse, so every file it writes parses back to f.
func Encode(f *ChannelFile) ([]byte, error) {
	nFields := len(f.Fields)
	if nFields == 0 || nFields > MaxFields {
		return nil, fmt.Errorf("%w: %d fields; must be 1..%d", ErrEncode, nFields, MaxFields)
	}
	if len(f.Instances) > MaxInstances {
		return nil, fmt.Errorf("%w: %d instances; the limit is %d", ErrEncode, len(f.Instances), MaxInstances)
	}
	size := HeaderSize + nFields
	for i, t := range f.Fields {
		if t != FieldString && t != FieldUint {
			return nil, fmt.Errorf("%w: field %d has unknown type %d", ErrEncode, i+1, t)
		}
	}
	for i := range f.Instances {
		in := &f.Instances[i]
		if in.Action == 0 || in.Action > maxAction {
			return nil, fmt.Errorf("%w: instance %d has unknown action %d", ErrEncode, i+1, in.Action)
		}
		size += instanceFixedSize + nFields
		prev := -1
		for _, m := range in.Matchers {
			if int(m.Field) <= prev || int(m.Field) >= nFields {
				return nil, fmt.Errorf("%w: instance %d: matcher on field %d is out of order or past the %d declared fields", ErrEncode, i+1, int(m.Field)+1, nFields)
			}
			prev = int(m.Field)
			switch m.Kind {
			case MatchEqualUint:
				size += 8
			case MatchRange:
				size += 16
			case MatchEqualString, MatchPrefix, MatchPattern:
				limit := MaxStringLen
				if m.Kind == MatchPattern {
					limit = MaxPatternLen
				}
				if len(m.Str) > limit {
					return nil, fmt.Errorf("%w: instance %d, field %d: %s operand is %d bytes; the limit is %d", ErrEncode, i+1, m.Field+1, m.Kind, len(m.Str), limit)
				}
				size += 2 + len(m.Str)
			default:
				return nil, fmt.Errorf("%w: instance %d, field %d: matcher kind %s (%d) is not stored; leave wildcards out of Matchers", ErrEncode, i+1, m.Field+1, m.Kind, m.Kind)
			}
		}
	}
	if size+TrailerSize > MaxFileSize {
		return nil, fmt.Errorf("%w: %d bytes; the limit is %d", ErrEncode, size+TrailerSize, MaxFileSize)
	}

	le := binary.LittleEndian
	b := make([]byte, HeaderSize, size+TrailerSize)
	copy(b, Magic)
	le.PutUint16(b[4:], FormatVersion)
	le.PutUint32(b[8:], f.Channel)
	le.PutUint32(b[12:], f.ContentVersion)
	le.PutUint16(b[16:], f.TemplateType)
	le.PutUint16(b[18:], f.TemplateVersion)
	le.PutUint16(b[20:], uint16(nFields))
	le.PutUint32(b[24:], uint32(len(f.Instances)))
	le.PutUint32(b[28:], uint32(size-HeaderSize))
	for _, t := range f.Fields {
		b = append(b, byte(t))
	}
	for i := range f.Instances {
		in := &f.Instances[i]
		b = le.AppendUint32(b, in.ID)
		b = append(b, byte(in.Action))
		b = appendMatchers(b, in.Matchers, nFields)
	}
	f.Checksum = sha256.Sum256(b)
	return append(b, f.Checksum[:]...), nil
}

// appendMatchers appends the wire form of one instance's matchers: one per
// declared field, wildcards where ms has no matcher. ms must be valid (Encode
// checks it).
func appendMatchers(b []byte, ms []Matcher, nFields int) []byte {
	le := binary.LittleEndian
	for fi := range nFields {
		if len(ms) == 0 || int(ms[0].Field) != fi {
			b = append(b, byte(MatchAny))
			continue
		}
		m := ms[0]
		ms = ms[1:]
		b = append(b, byte(m.Kind))
		switch m.Kind {
		case MatchEqualUint:
			b = le.AppendUint64(b, m.Lo)
		case MatchRange:
			b = le.AppendUint64(b, m.Lo)
			b = le.AppendUint64(b, m.Hi)
		default:
			b = le.AppendUint16(b, uint16(len(m.Str)))
			b = append(b, m.Str...)
		}
	}
	return b
}

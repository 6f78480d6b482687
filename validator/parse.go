package validator

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// instanceFixedSize is the wire size of an instance with only wildcards, per
// declared field: id (4), action (1), one kind byte per field.
const instanceFixedSize = 5

// Parse decodes a channel file. It checks structure, bounds and the checksum,
// and nothing about meaning: whether the interpreter can run the file is
// Validate's question. Every length and count is checked against MaxX limits
// and against the bytes that remain before anything is allocated, so Parse
// allocates at most a small multiple of len(data).
//
// Parse accepts exactly the canonical encoding: Encode of the result gives
// back data byte for byte. Errors are *FormatError.
func Parse(data []byte) (*ChannelFile, error) {
	if len(data) > MaxFileSize {
		return nil, ferr(CodeTooLarge, 0, 0, 0, "file is %d bytes; the limit is %d", len(data), MaxFileSize)
	}
	if len(data) < 4 || string(data[:4]) != Magic {
		if len(data) < 4 && string(data) == Magic[:len(data)] {
			return nil, ferr(CodeTruncated, len(data), 0, 0, "file is %d bytes; a channel file is at least %d", len(data), HeaderSize+TrailerSize)
		}
		return nil, ferr(CodeBadMagic, 0, 0, 0, "file does not start with %q: not a channel file", Magic)
	}
	if len(data) < HeaderSize+TrailerSize {
		return nil, ferr(CodeTruncated, len(data), 0, 0, "file is %d bytes; a channel file is at least %d", len(data), HeaderSize+TrailerSize)
	}
	le := binary.LittleEndian
	if v := le.Uint16(data[4:]); v != FormatVersion {
		return nil, ferr(CodeUnsupportedFormat, 4, 0, 0, "format version %d; this build reads version %d", v, FormatVersion)
	}
	if flags, rsv := le.Uint16(data[6:]), le.Uint16(data[22:]); flags != 0 || rsv != 0 {
		return nil, ferr(CodeNonCanonical, 6, 0, 0, "reserved header fields must be zero (flags %#x, reserved %#x)", flags, rsv)
	}
	bodyLen := uint64(le.Uint32(data[28:]))
	if want := HeaderSize + bodyLen + TrailerSize; uint64(len(data)) < want {
		return nil, ferr(CodeTruncated, len(data), 0, 0, "header declares %d bytes of body, file ends %d bytes early", bodyLen, want-uint64(len(data)))
	} else if uint64(len(data)) > want {
		return nil, ferr(CodeTrailingData, int(want), 0, 0, "%d bytes after the checksum trailer", uint64(len(data))-want)
	}
	end := HeaderSize + int(bodyLen)
	sum := sha256.Sum256(data[:end])
	if string(sum[:]) != string(data[end:]) {
		return nil, ferr(CodeChecksum, end, 0, 0, "SHA-256 trailer %x does not match content %x: the file is corrupt or was modified", data[end:end+8], sum[:8])
	}

	f := &ChannelFile{
		Channel:         le.Uint32(data[8:]),
		ContentVersion:  le.Uint32(data[12:]),
		TemplateType:    le.Uint16(data[16:]),
		TemplateVersion: le.Uint16(data[18:]),
	}
	copy(f.Checksum[:], data[end:])
	nFields := int(le.Uint16(data[20:]))
	nInst := uint64(le.Uint32(data[24:]))
	if nFields == 0 || nFields > MaxFields {
		return nil, ferr(CodeCountLimit, 20, 0, 0, "declared field count %d; must be 1..%d", nFields, MaxFields)
	}
	if nInst > MaxInstances {
		return nil, ferr(CodeCountLimit, 24, 0, 0, "instance count %d; the limit is %d", nInst, MaxInstances)
	}
	if need := uint64(nFields) + nInst*uint64(instanceFixedSize+nFields); need > bodyLen {
		return nil, ferr(CodeTruncated, 24, 0, 0, "%d instances of %d fields need at least %d bytes of body; the file has %d", nInst, nFields, need, bodyLen)
	}

	// One string copy of the body; every string operand is a substring of
	// it, so parsing does not allocate per matcher.
	body := string(data[HeaderSize:end])
	p := parser{s: body, base: HeaderSize}
	f.Fields = make([]FieldType, nFields)
	for i := range f.Fields {
		t := FieldType(body[i])
		if t != FieldString && t != FieldUint {
			return nil, ferr(CodeBadFieldType, HeaderSize+i, 0, i+1, "field %d has unknown type %d", i+1, t)
		}
		f.Fields[i] = t
	}
	p.off = nFields
	if err := p.instances(f, int(nInst)); err != nil {
		return nil, err
	}
	if p.off != len(body) {
		return nil, ferr(CodeTrailingData, p.pos(), 0, 0, "%d bytes after the last instance", len(body)-p.off)
	}
	return f, nil
}

type parser struct {
	s    string
	off  int
	base int // file offset of s[0]
}

func (p *parser) pos() int { return p.base + p.off }

// need fails unless n more bytes remain. It stays small enough to inline;
// the error is built out of line.
func (p *parser) need(n, inst, field int) error {
	if len(p.s)-p.off < n {
		return p.truncated(inst, field)
	}
	return nil
}

func (p *parser) truncated(inst, field int) error {
	return ferr(CodeTruncated, p.pos(), inst, field, "body ends inside instance %d", inst)
}

func (p *parser) u16() uint16 {
	v := uint16(p.s[p.off]) | uint16(p.s[p.off+1])<<8
	p.off += 2
	return v
}

func (p *parser) u32() uint32 {
	v := uint32(p.s[p.off]) | uint32(p.s[p.off+1])<<8 | uint32(p.s[p.off+2])<<16 | uint32(p.s[p.off+3])<<24
	p.off += 4
	return v
}

func (p *parser) u64() uint64 {
	lo := uint64(p.u32())
	return lo | uint64(p.u32())<<32
}

// matcherChunk is the number of matchers the parser allocates at a time. Fixed
// chunks (rather than doubling) keep the memory allocated close to what the
// file needs, and a chunk of 160 KiB amortizes the allocation well.
const matcherChunk = 4096

func (p *parser) instances(f *ChannelFile, n int) error {
	f.Instances = make([]Instance, n)
	nFields := len(f.Fields)
	var pool []Matcher // shared backing store, grown in chunks
	for i := range f.Instances {
		in := &f.Instances[i]
		idx := i + 1
		if err := p.need(instanceFixedSize, idx, 0); err != nil {
			return err
		}
		in.ID = p.u32()
		in.Action = Action(p.s[p.off])
		if in.Action == 0 || in.Action > maxAction {
			return ferr(CodeBadAction, p.pos(), idx, 0, "instance %d has unknown action %d", idx, in.Action)
		}
		p.off++
		start := p.off
		first := len(pool)
		for fi := 0; fi < nFields; fi++ {
			if err := p.need(1, idx, fi+1); err != nil {
				return err
			}
			kind := MatcherKind(p.s[p.off])
			if kind > maxMatcherKind {
				return ferr(CodeBadMatcher, p.pos(), idx, fi+1, "instance %d, field %d: unknown matcher kind %d", idx, fi+1, kind)
			}
			p.off++
			if kind == MatchAny {
				continue
			}
			m := Matcher{Field: uint16(fi), Kind: kind}
			switch kind {
			case MatchEqualUint:
				if err := p.need(8, idx, fi+1); err != nil {
					return err
				}
				m.Lo = p.u64()
			case MatchRange:
				if err := p.need(16, idx, fi+1); err != nil {
					return err
				}
				m.Lo = p.u64()
				m.Hi = p.u64()
			default: // string operands
				limit := MaxStringLen
				if kind == MatchPattern {
					limit = MaxPatternLen
				}
				if err := p.need(2, idx, fi+1); err != nil {
					return err
				}
				at := p.pos()
				l := int(p.u16())
				if l > limit {
					return ferr(CodeLengthLimit, at, idx, fi+1, "instance %d, field %d: %s operand is %d bytes; the limit is %d", idx, fi+1, kind, l, limit)
				}
				if err := p.need(l, idx, fi+1); err != nil {
					return err
				}
				m.Str = p.s[p.off : p.off+l]
				p.off += l
			}
			if len(pool) == cap(pool) {
				// Full chunk: start a new one, keeping this instance's
				// matchers contiguous.
				grown := make([]Matcher, len(pool)-first, max(matcherChunk, len(pool)-first+nFields))
				copy(grown, pool[first:])
				pool, first = grown, 0
			}
			pool = append(pool, m)
		}
		if len(pool) > first {
			in.Matchers = pool[first:len(pool):len(pool)]
		}
		in.raw = p.s[start:p.off]
	}
	return nil
}

func ferr(code Code, off, inst, field int, format string, args ...any) *FormatError {
	return &FormatError{Code: code, Offset: off, Instance: inst, Field: field, Msg: fmt.Sprintf(format, args...)}
}

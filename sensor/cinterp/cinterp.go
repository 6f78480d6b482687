//go:build cgo

package cinterp

/*
#include <stdlib.h>

// The very file the kernel module compiles, included rather than copied.
// This must stay the package's only cgo file: a second preamble including
// it would define every function twice.
#include "../c/rfinterp.c"
*/
import "C"

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"unsafe"

	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/validator"
)

// Code is a result code of the C port: OK, or one of the RFI_E_ codes.
type Code int

// The C port's result codes (rfinterp.h).
const (
	OK                   Code = C.RFI_OK
	ErrTruncated         Code = C.RFI_E_TRUNCATED
	ErrTooLarge          Code = C.RFI_E_TOO_LARGE
	ErrBadMagic          Code = C.RFI_E_BAD_MAGIC
	ErrUnsupportedFormat Code = C.RFI_E_UNSUPPORTED_FORMAT
	ErrChecksum          Code = C.RFI_E_CHECKSUM
	ErrCountLimit        Code = C.RFI_E_COUNT_LIMIT
	ErrLengthLimit       Code = C.RFI_E_LENGTH_LIMIT
	ErrBadFieldType      Code = C.RFI_E_BAD_FIELD_TYPE
	ErrBadMatcher        Code = C.RFI_E_BAD_MATCHER
	ErrBadAction         Code = C.RFI_E_BAD_ACTION
	ErrTrailingData      Code = C.RFI_E_TRAILING_DATA
	ErrNonCanonical      Code = C.RFI_E_NON_CANONICAL
	ErrField             Code = C.RFI_E_FIELD
	ErrInval             Code = C.RFI_E_INVAL
)

// validatorCodes maps each parser code to the validator.Code it stands for.
var validatorCodes = map[Code]validator.Code{
	ErrTruncated:         validator.CodeTruncated,
	ErrTooLarge:          validator.CodeTooLarge,
	ErrBadMagic:          validator.CodeBadMagic,
	ErrUnsupportedFormat: validator.CodeUnsupportedFormat,
	ErrChecksum:          validator.CodeChecksum,
	ErrCountLimit:        validator.CodeCountLimit,
	ErrLengthLimit:       validator.CodeLengthLimit,
	ErrBadFieldType:      validator.CodeBadFieldType,
	ErrBadMatcher:        validator.CodeBadMatcher,
	ErrBadAction:         validator.CodeBadAction,
	ErrTrailingData:      validator.CodeTrailingData,
	ErrNonCanonical:      validator.CodeNonCanonical,
}

// ValidatorCode is the validator.Code c stands for: "" for OK, and for the
// codes validator.Parse has no counterpart of (ErrField, ErrInval).
func (c Code) ValidatorCode() validator.Code { return validatorCodes[c] }

func (c Code) String() string {
	switch c {
	case OK:
		return "OK"
	case ErrField:
		return "FIELD"
	case ErrInval:
		return "INVAL"
	}
	if v, ok := validatorCodes[c]; ok {
		return string(v)
	}
	return fmt.Sprintf("Code(%d)", int(c))
}

// File is a channel file parsed by the C port. Its memory is C memory;
// Close frees it, after every Program prepared from it is closed.
type File struct {
	data  unsafe.Pointer // a C copy of the file: operands point into it
	size  int
	file  *C.struct_rfi_file
	inst  *C.struct_rfi_instance
	match *C.struct_rfi_matcher
}

// Parse parses data as a kernel agent would with the C port: the header
// checks (rfi_check_header), the SHA-256 trailer, which the C code leaves
// to its caller and this binding verifies with crypto/sha256, then the two
// passes (rfi_parse_count, rfi_parse). The code is OK or the one
// validator.Parse gives for data.
func Parse(data []byte) (*File, Code) {
	f := &File{size: len(data)}
	// C.CBytes would hand back NULL for an empty file on some libcs; one
	// byte more keeps every pointer real.
	f.data = C.malloc(C.size_t(len(data) + 1))
	copy(unsafe.Slice((*byte)(f.data), len(data)+1), data)
	cdata := (*C.uint8_t)(f.data)

	var end C.size_t
	if rc := Code(C.rfi_check_header(cdata, C.size_t(len(data)), &end)); rc != OK {
		f.Close()
		return nil, rc
	}
	sum := sha256.Sum256(data[:end])
	if !bytes.Equal(sum[:], data[end:]) {
		f.Close()
		return nil, ErrChecksum
	}
	var ninst, nmatch C.uint32_t
	if rc := Code(C.rfi_parse_count(cdata, C.size_t(len(data)), &ninst, &nmatch)); rc != OK {
		f.Close()
		return nil, rc
	}
	f.file = (*C.struct_rfi_file)(C.calloc(1, C.sizeof_struct_rfi_file))
	f.inst = (*C.struct_rfi_instance)(C.calloc(C.size_t(ninst)+1, C.sizeof_struct_rfi_instance))
	f.match = (*C.struct_rfi_matcher)(C.calloc(C.size_t(nmatch)+1, C.sizeof_struct_rfi_matcher))
	if rc := Code(C.rfi_parse(cdata, C.size_t(len(data)), f.file, f.inst, ninst, f.match, nmatch)); rc != OK {
		// Pass 2 must agree with pass 1 on bytes pass 1 accepted.
		f.Close()
		return nil, rc
	}
	return f, OK
}

// Close frees the file's C memory. It is safe to call more than once.
func (f *File) Close() {
	for _, p := range []unsafe.Pointer{f.data, unsafe.Pointer(f.file), unsafe.Pointer(f.inst), unsafe.Pointer(f.match)} {
		if p != nil {
			C.free(p)
		}
	}
	*f = File{}
}

func (f *File) instances() []C.struct_rfi_instance {
	return unsafe.Slice(f.inst, int(f.file.ninstances))
}

func (f *File) matchers() []C.struct_rfi_matcher {
	return unsafe.Slice(f.match, int(f.file.nmatchers))
}

// NumInstances is the number of template instances.
func (f *File) NumInstances() int { return int(f.file.ninstances) }

// ChannelFile is the file as the C port parsed it, in validator's types:
// equal to what validator.Parse returns for the same bytes, but for
// validator.Instance's unexported copy of the raw matcher bytes.
func (f *File) ChannelFile() *validator.ChannelFile {
	cf := &validator.ChannelFile{
		Channel:         uint32(f.file.channel),
		ContentVersion:  uint32(f.file.content_version),
		TemplateType:    uint16(f.file.template_type),
		TemplateVersion: uint16(f.file.template_version),
		Fields:          make([]validator.FieldType, int(f.file.nfields)),
		Instances:       make([]validator.Instance, int(f.file.ninstances)),
	}
	for i := range cf.Fields {
		cf.Fields[i] = validator.FieldType(f.file.fields[i])
	}
	ms := f.matchers()
	for i, in := range f.instances() {
		out := &cf.Instances[i]
		out.ID = uint32(in.id)
		out.Action = validator.Action(in.action)
		for _, m := range ms[in.first : in.first+in.count] {
			out.Matchers = append(out.Matchers, validator.Matcher{
				Field: uint16(m.field),
				Kind:  validator.MatcherKind(m.kind),
				Str:   goString(m.str, m.len),
				Lo:    uint64(m.lo),
				Hi:    uint64(m.hi),
			})
		}
	}
	copy(cf.Checksum[:], unsafe.Slice((*byte)(f.data), f.size)[f.size-validator.TrailerSize:])
	return cf
}

// goString copies n bytes at p; "" for n == 0, whatever p is.
func goString[N C.uint16_t | C.uint32_t](p *C.uint8_t, n N) string {
	if n == 0 {
		return ""
	}
	return C.GoStringN((*C.char)(unsafe.Pointer(p)), C.int(n))
}

// goEvent copies a C event into Go memory.
func goEvent(ev *C.struct_rfi_event) sensor.Event {
	out := sensor.Event{TemplateType: uint16(ev.template_type), Fields: make([]sensor.Value, int(ev.nfields))}
	if ev.nfields == 0 {
		return out
	}
	for i, v := range unsafe.Slice(ev.fields, int(ev.nfields)) {
		out.Fields[i] = sensor.Value{Str: goString(v.str, v.len), Num: uint64(v.num)}
	}
	return out
}

// Synthesize returns what rfi_synthesize builds for the first n instances
// (all of them for n < 0 or past the count), in sensor.Synthesize's order:
// for each instance, variant 0 then variant 1.
func (f *File) Synthesize(n int) []sensor.Event {
	if n < 0 || n > f.NumInstances() {
		n = f.NumInstances()
	}
	scratchLen := C.rfi_synth_scratch_size(f.file)
	scratch := (*C.uint8_t)(C.malloc(scratchLen))
	defer C.free(unsafe.Pointer(scratch))
	fields := (*C.struct_rfi_value)(C.calloc(C.size_t(f.file.nfields), C.sizeof_struct_rfi_value))
	defer C.free(unsafe.Pointer(fields))
	ev := (*C.struct_rfi_event)(C.calloc(1, C.sizeof_struct_rfi_event))
	defer C.free(unsafe.Pointer(ev))
	out := make([]sensor.Event, 0, 2*n)
	for i := range n {
		for variant := range 2 {
			if rc := Code(C.rfi_synthesize(f.file, C.uint32_t(i), C.int(variant), fields, scratch, scratchLen, ev)); rc != OK {
				panic(fmt.Sprintf("cinterp: rfi_synthesize(instance %d, variant %d) = %v with the scratch it asked for", i, variant, rc))
			}
			out = append(out, goEvent(ev))
		}
	}
	return out
}

// RandomEvents returns n events of rfi_rand_event's sequence from seed: not
// sensor.RandomEvents' sequence, only its spirit.
func (f *File) RandomEvents(seed uint64, n int) []sensor.Event {
	scratchLen := C.rfi_rand_scratch_size(f.file)
	scratch := (*C.uint8_t)(C.malloc(scratchLen))
	defer C.free(unsafe.Pointer(scratch))
	fields := (*C.struct_rfi_value)(C.calloc(C.size_t(f.file.nfields)+C.RFI_RAND_EXTRA_FIELDS, C.sizeof_struct_rfi_value))
	defer C.free(unsafe.Pointer(fields))
	ev := (*C.struct_rfi_event)(C.calloc(1, C.sizeof_struct_rfi_event))
	defer C.free(unsafe.Pointer(ev))
	state := (*C.uint64_t)(C.malloc(C.sizeof_uint64_t))
	defer C.free(unsafe.Pointer(state))
	*state = C.uint64_t(seed)
	out := make([]sensor.Event, 0, n)
	for range n {
		C.rfi_rand_event(f.file, state, fields, scratch, scratchLen, ev)
		out = append(out, goEvent(ev))
	}
	return out
}

// Program is a File loaded into the C interpreter with a number of inputs,
// as a sensor build that supplies that many for the file's template type.
// It must be closed before its File.
type Program struct {
	f        *File
	prog     *C.struct_rfi_program
	frame    unsafe.Pointer
	ev       *C.struct_rfi_event
	verdict  *C.struct_rfi_verdict
	arena    unsafe.Pointer // the current event's values and string bytes
	arenaCap int
}

// Prepare loads f for a sensor that supplies ninputs inputs (0 to
// RFI_MAX_INPUTS).
func (f *File) Prepare(ninputs int) (*Program, error) {
	if ninputs < 0 || ninputs > C.RFI_MAX_INPUTS {
		return nil, fmt.Errorf("cinterp: %d inputs; the C interpreter takes 0 to %d", ninputs, C.RFI_MAX_INPUTS)
	}
	p := &Program{f: f}
	size := C.rfi_frame_size(C.uint32_t(ninputs))
	p.frame = C.malloc(size + 1)
	p.prog = (*C.struct_rfi_program)(C.calloc(1, C.sizeof_struct_rfi_program))
	p.ev = (*C.struct_rfi_event)(C.calloc(1, C.sizeof_struct_rfi_event))
	p.verdict = (*C.struct_rfi_verdict)(C.calloc(1, C.sizeof_struct_rfi_verdict))
	C.rfi_prepare(p.prog, f.file, C.uint32_t(ninputs), p.frame)
	return p, nil
}

// Close frees the program's C memory. It is safe to call more than once.
func (p *Program) Close() {
	for _, q := range []unsafe.Pointer{p.frame, unsafe.Pointer(p.prog), unsafe.Pointer(p.ev), unsafe.Pointer(p.verdict), p.arena} {
		if q != nil {
			C.free(q)
		}
	}
	*p = Program{}
}

// FieldFault is the C interpreter's RFI_E_FIELD: a matcher of an instance
// read a field past the inputs, where Go's interpreter panics.
type FieldFault struct {
	Instance int    // 0-based index of the instance being evaluated
	ID       uint32 // its id
}

func (e *FieldFault) Error() string {
	return fmt.Sprintf("cinterp: instance %d (id %d) reads a field past the inputs", e.Instance+1, e.ID)
}

// Eval copies ev into C memory and runs rfi_eval on it.
func (p *Program) Eval(ev sensor.Event) (sensor.Verdict, *FieldFault) {
	p.load(ev)
	rc := Code(C.rfi_eval(p.prog, p.ev, p.verdict))
	v := sensor.Verdict{Matches: int(p.verdict.matches), Action: validator.Action(p.verdict.action), First: uint32(p.verdict.first)}
	switch rc {
	case OK:
		return v, nil
	case ErrField:
		cur := int(p.prog.cur)
		return sensor.Verdict{}, &FieldFault{Instance: cur, ID: uint32(p.f.instances()[cur].id)}
	}
	panic(fmt.Sprintf("cinterp: rfi_eval returned %v", rc))
}

// load lays ev out in the arena: its values, then its string bytes.
func (p *Program) load(ev sensor.Event) {
	n := len(ev.Fields)
	size := n * C.sizeof_struct_rfi_value
	for _, v := range ev.Fields {
		size += len(v.Str)
	}
	if size+1 > p.arenaCap {
		C.free(p.arena)
		p.arenaCap = max(size+1, 2*p.arenaCap)
		p.arena = C.malloc(C.size_t(p.arenaCap))
	}
	p.ev.template_type = C.uint16_t(ev.TemplateType)
	p.ev.nfields = C.uint32_t(n)
	p.ev.fields = nil
	if n == 0 {
		return
	}
	vals := unsafe.Slice((*C.struct_rfi_value)(p.arena), n)
	strs := unsafe.Slice((*byte)(unsafe.Add(p.arena, n*C.sizeof_struct_rfi_value)), size-n*C.sizeof_struct_rfi_value+1)
	off := 0
	for i, v := range ev.Fields {
		vals[i] = C.struct_rfi_value{num: C.uint64_t(v.Num), len: C.uint32_t(len(v.Str))}
		if len(v.Str) > 0 {
			copy(strs[off:], v.Str)
			vals[i].str = (*C.uint8_t)(unsafe.Pointer(&strs[off]))
			off += len(v.Str)
		}
	}
	p.ev.fields = &vals[0]
}

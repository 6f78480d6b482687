// Package cinterp binds the C port of the reference sensor (sensor/c:
// rfinterp.h and rfinterp.c, the parser and interpreter a kernel module
// compiles) to Go, for tests only: its tests and the fuzz target
// FuzzCInterpreterMatchesGo hold the C port to the Go code it ports
// (validator.Parse, sensor.Program.Eval, sensor.Synthesize), the same error
// code for the same file and the same verdict, or the same out-of-range
// field, for the same events.
//
// The binding compiles sensor/c/rfinterp.c itself, byte for byte the file
// the kernel compiles, without RFI_LEGACY_UNCHECKED: where Go's interpreter
// panics with an index out of range, the C one returns RFI_E_FIELD.
//
// It needs cgo and a C compiler. Where there is none (CGO_ENABLED=0), the
// package holds nothing but this comment and its tests skip, saying to
// install gcc. Nothing but tests imports it (internal/archtest checks).
package cinterp

package validator

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
)

// Stage names the check that refused a channel file.
type Stage uint8

// Stages, in the order Vet runs them.
const (
	// StageNone: nothing refused the file.
	StageNone Stage = iota
	// StageValidation: the static checks (Validate) refused it.
	StageValidation
	// StagePreflight: the interpreter did not survive it (Preflight).
	StagePreflight
)

var stageNames = [...]string{StageNone: "none", StageValidation: "validation", StagePreflight: "preflight"}

func (s Stage) String() string {
	if int(s) < len(stageNames) {
		return stageNames[s]
	}
	return fmt.Sprintf("Stage(%d)", uint8(s))
}

// VetOptions configure Vet. The zero value runs the static checks only.
type VetOptions struct {
	// Options are the static checks' (the installed content a file must
	// be newer than, the problem limit).
	Options
	// SkipStatic leaves the static checks out and reports nothing Parse
	// or Validate would find. It models the 2024 validator bug for the
	// lab; never set it for real content.
	SkipStatic bool
	// Preflight, when not nil, runs the file in the interpreter after the
	// static checks passed.
	Preflight *PreflightOptions
	// TempDir is where the preflight's copy of the file is written
	// (os.TempDir if empty).
	TempDir string
}

// Verdict is what Vet found.
type Verdict struct {
	// File is the parsed file, nil when the data does not parse.
	File *ChannelFile
	// Problems are every problem found: the static checks', then the
	// preflight's.
	Problems Problems
	// RefusedBy is the check that refused the file, StageNone when it was
	// accepted.
	RefusedBy Stage
	// Preflighted reports whether the preflight ran.
	Preflighted bool
}

// Vet is the product's check of a channel file, the same on the publisher
// and on every host: the static checks against caps (unless
// opts.SkipStatic), then, when opts.Preflight is set and nothing so far
// rejects the file, the preflight. A refused file is a Verdict with
// RefusedBy set, not an error.
//
// The preflight runs on a temporary copy of data, written to opts.TempDir
// and removed afterwards, so that the bytes preflighted are the bytes
// checked, whatever happens to the caller's file meanwhile.
//
// The error is not nil only when a check could not run: ErrPreflightCommand
// (wrapped) when the preflight command cannot be started or its copy of the
// file cannot be written, or ctx's error. That says nothing about the file.
func Vet(ctx context.Context, data []byte, caps *Capabilities, opts VetOptions) (Verdict, error) {
	var v Verdict
	if opts.SkipStatic {
		v.File, _ = Parse(data) // to say what the file is; nothing is checked
	} else {
		v.File, v.Problems = Validate(data, caps, opts.Options)
		if v.Problems.HasErrors() {
			v.RefusedBy = StageValidation
			return v, nil
		}
	}
	if opts.Preflight == nil {
		return v, nil
	}
	ps, err := preflightData(ctx, data, opts.TempDir, *opts.Preflight)
	if err != nil {
		return v, err
	}
	v.Preflighted = true
	v.Problems = append(v.Problems, ps...)
	if ps.HasErrors() {
		v.RefusedBy = StagePreflight
	}
	return v, nil
}

// preflightData runs Preflight on a temporary copy of data in dir.
func preflightData(ctx context.Context, data []byte, dir string, opts PreflightOptions) (Problems, error) {
	f, err := os.CreateTemp(dir, "preflight-*.rfch")
	if err != nil {
		return nil, fmt.Errorf("%w: copy the file for it: %w", ErrPreflightCommand, err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("%w: copy the file for it: %w", ErrPreflightCommand, err)
	}
	return Preflight(ctx, f.Name(), opts)
}

// Accepted reports whether no check refused the file.
func (v Verdict) Accepted() bool { return v.RefusedBy == StageNone }

// Err returns nil for an accepted file, and otherwise a *RejectedError
// listing the rejecting problems, after "preflight: " when the preflight
// refused the file. The daemon reports it as the reason of its refusal.
func (v Verdict) Err() error {
	switch v.RefusedBy {
	case StageNone:
		return nil
	case StagePreflight:
		return fmt.Errorf("preflight: %w", v.Problems.Err())
	}
	return v.Problems.Err()
}

// Refusal says why file was refused, as the CLIs end their report:
// "FILE is invalid" or "FILE failed preflight"; "" for an accepted file.
func (v Verdict) Refusal(file string) string {
	switch v.RefusedBy {
	case StageNone:
		return ""
	case StagePreflight:
		return file + " failed preflight"
	}
	return file + " is invalid"
}

// Codes lists the code of every problem found, in order, for telemetry.
func (v Verdict) Codes() []string {
	var out []string
	for _, p := range v.Problems {
		out = append(out, string(p.Code))
	}
	return out
}

// Print writes the problems as the CLIs show them, one Problem.Line each,
// and after an interpreter crash with a Go traceback the frame it crashed
// in: "FILE: PREFLIGHT_CRASH: at FUNCTION (DIR/FILE.go:LINE)".
func (v Verdict) Print(w io.Writer, file string) {
	for _, p := range v.Problems {
		fmt.Fprintln(w, p.Line(file))
		if p.Code != CodePreflightCrash {
			continue
		}
		if frame := crashFrame(p.Detail); frame != "" {
			fmt.Fprintf(w, "%s: %s: at %s\n", file, p.Code, frame)
		}
	}
}

// crashFrame picks the frame a Go program panicked in out of its
// traceback, the line a content engineer wants to see: the first frame
// outside the runtime after the last panic call, or, in a traceback
// without one, after the goroutine header. It returns "" for output that
// is not a Go traceback.
func crashFrame(stack string) string {
	lines := strings.Split(stack, "\n")
	start := -1
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "panic("):
			start = i + 2 // past panic's own location line
		case start < 0 && strings.HasPrefix(l, "goroutine "):
			start = i + 1
		}
	}
	if start < 0 {
		return ""
	}
	for i := start; i+1 < len(lines); i += 2 {
		fn, loc := lines[i], strings.TrimSpace(lines[i+1])
		if fn == "" || strings.HasPrefix(fn, "\t") {
			return ""
		}
		if strings.HasPrefix(fn, "runtime.") || strings.HasPrefix(fn, "runtime/") {
			continue
		}
		if j := strings.LastIndexByte(fn, '('); j > 0 {
			fn = fn[:j]
		}
		loc, _, _ = strings.Cut(loc, " ")
		// Keep the directory and the file: "sensor/sensor.go:138".
		if j := strings.LastIndexAny(loc, `/\`); j > 0 {
			if k := strings.LastIndexAny(loc[:j], `/\`); k >= 0 {
				loc = loc[k+1:]
			}
		}
		return fn + " (" + loc + ")"
	}
	return ""
}

package sensor

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/ringfence/ringfence/validator"
)

// DefaultRandomEvents is how many random events a preflight run evaluates
// after the synthesized ones.
const DefaultRandomEvents = 5000

// Exit codes of PreflightMain, which validator.Preflight interprets.
const (
	ExitPass  = 0
	ExitLoad  = 1 // the interpreter refused to load the file
	ExitUsage = 2
	ExitCrash = 3 // the interpreter crashed on an event
)

// Report is what a passing preflight run evaluated.
type Report struct {
	Sensor      string `json:"sensor"`
	Instances   int    `json:"instances"`
	Synthesized int    `json:"synthesized_events"`
	Random      int    `json:"random_events"`
	Matches     int    `json:"matches"`
}

// CrashError is returned by RunPreflight when the interpreter panicked.
type CrashError struct {
	Phase    string // "synthesized" or "random"
	Event    int    // 1-based index within the phase
	Instance int    // 1-based index of the instance being evaluated
	ID       uint32 // its id
	Value    any    // what the interpreter panicked with
	Stack    []byte
	Input    Event
}

func (e *CrashError) Error() string {
	return fmt.Sprintf("interpreter crashed in instance %d (id %d) on %s event %d: %v", e.Instance, e.ID, e.Phase, e.Event, e.Value)
}

// RunPreflight loads data into a sensor with caps and drives it with the
// synthesized events and then random ones from seed. It runs in the
// preflight child process: a crash here is recovered only to describe it,
// and the caller exits with ExitCrash.
func RunPreflight(data []byte, caps *validator.Capabilities, seed uint64, random int) (Report, error) {
	rep := Report{Sensor: caps.Sensor}
	prog, err := New(caps).Load(data)
	if err != nil {
		return rep, err
	}
	f := prog.File()
	rep.Instances = len(f.Instances)
	synth := Synthesize(f)
	for i, ev := range synth {
		v, err := evalGuarded(prog, ev, "synthesized", i+1)
		if err != nil {
			return rep, err
		}
		rep.Synthesized++
		rep.Matches += v.Matches
	}
	next := RandomEvents(f, seed)
	for i := range random {
		v, err := evalGuarded(prog, next(), "random", i+1)
		if err != nil {
			return rep, err
		}
		rep.Random++
		rep.Matches += v.Matches
	}
	return rep, nil
}

func evalGuarded(p *Program, ev Event, phase string, n int) (v Verdict, err error) {
	defer func() {
		if r := recover(); r != nil {
			inst := &p.file.Instances[p.cur]
			err = &CrashError{Phase: phase, Event: n, Instance: p.cur + 1, ID: inst.ID, Value: r, Stack: debug.Stack(), Input: ev}
		}
	}()
	return p.Eval(ev), nil
}

// LoadCapabilities loads the capability manifest at path, the flag every
// command that checks content against an interpreter takes, or returns the
// built-in sensor's (DefaultCapabilities) when path is empty.
func LoadCapabilities(path string) (*validator.Capabilities, error) {
	if path == "" {
		return DefaultCapabilities(), nil
	}
	return validator.LoadCapabilities(path)
}

// PreflightCommand is the reference sensor's preflight command as bin, a
// Ringfence binary with a 'sensor' command that calls PreflightMain, runs it
// against the capability manifest at capsPath (the built-in sensor's when
// empty): the default validator.PreflightOptions.Command. The channel
// file's path goes last.
func PreflightCommand(bin, capsPath string) []string {
	cmd := []string{bin, "sensor", "preflight"}
	if capsPath != "" {
		cmd = append(cmd, "--capabilities", capsPath)
	}
	return cmd
}

// PreflightMain is the preflight child's command line:
//
//	preflight [--capabilities FILE] [--seed N] [--events N] FILE
//
// It prints a JSON Report on stdout and exits ExitPass, or describes the
// failure on stderr and exits ExitLoad, ExitCrash or ExitUsage: PreflightFile
// with the capabilities of --capabilities.
func PreflightMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("preflight", flag.ContinueOnError)
	fs.SetOutput(stderr)
	capsPath := fs.String("capabilities", "", "capability manifest of the interpreter (default: the built-in sensor "+Version+")")
	seed := fs.Uint64("seed", DefaultPreflightSeed, "seed of the random event generator")
	events := fs.Int("events", DefaultRandomEvents, "random events to evaluate after the synthesized ones")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 || *events < 0 {
		fmt.Fprintln(stderr, "usage: preflight [--capabilities FILE] [--seed N] [--events N] FILE")
		return ExitUsage
	}
	caps, err := LoadCapabilities(*capsPath)
	if err != nil {
		fmt.Fprintln(stderr, "preflight:", err)
		return ExitUsage
	}
	return PreflightFile(fs.Arg(0), caps, *seed, *events, stdout, stderr)
}

// DefaultPreflightSeed seeds a preflight run's random events unless the
// caller chooses another seed, so that a run can be repeated.
const DefaultPreflightSeed = 1

// PreflightFile is the preflight harness: it runs the channel file at path
// in a sensor with caps (RunPreflight), prints a JSON Report on stdout and
// returns ExitPass, or describes the failure on stderr and returns ExitLoad,
// ExitCrash (the interpreter crashed: the event and the stack follow the
// first line) or ExitUsage (the file cannot be read). Its exit code and
// stderr are what validator.Preflight interprets. Both the reference
// preflight command (PreflightMain) and the reference agent's own preflight
// mode (ringfenced agent --preflight) are this function, given the
// capabilities they run with.
func PreflightFile(path string, caps *validator.Capabilities, seed uint64, events int, stdout, stderr io.Writer) int {
	data, err := validator.ReadFile(path)
	if err != nil {
		fmt.Fprintln(stderr, "preflight:", err)
		return ExitUsage
	}
	rep, err := RunPreflight(data, caps, seed, events)
	if ce, ok := err.(*CrashError); ok {
		fmt.Fprintf(stderr, "preflight: %v\n", ce)
		ev, _ := json.Marshal(ce.Input)
		fmt.Fprintf(stderr, "event: %s\n%s", clipBytes(ev, 2048), ce.Stack)
		return ExitCrash
	}
	if err != nil {
		fmt.Fprintln(stderr, "preflight:", err)
		return ExitLoad
	}
	out, _ := json.Marshal(rep)
	fmt.Fprintf(stdout, "%s\n", out)
	return ExitPass
}

func clipBytes(b []byte, n int) []byte {
	if len(b) > n {
		return append(b[:n:n], "..."...)
	}
	return b
}

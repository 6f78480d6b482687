// Package loader is the loader of docs/design.md for the reference sensor: it runs
// the loader contract (installer.Boot, which is bootguard.Select plus slot
// verification), reads the chosen slot's content exactly as verified, loads it
// into the interpreter, lets the interpreter survive its first events, and
// only then records the load as finished (breadcrumb LOADED). When the agent
// stops cleanly, Stopped records that too (breadcrumb STOPPED), so that the
// next start loads a trial again without spending one of its tries.
//
// It does not recover from an interpreter crash: a crash while loading must
// end the process (a kernel agent's crash ends the host), leaving the
// breadcrumb LOADING on disk, so that the next start falls back to
// last-known-good by itself. The VM test's guest init and the daemon's
// supervised sensor both load content through this package.
package loader

import (
	"errors"
	"fmt"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/validator"
)

// DefaultFirstEvents is how many events, after the synthesized ones, the
// interpreter evaluates before a load counts as finished.
const DefaultFirstEvents = 200

// Options configure Load.
type Options struct {
	// Capabilities of the interpreter content is loaded into. Required.
	Capabilities *validator.Capabilities
	// FirstEvents returns the events the loaded content must survive before
	// the load counts as finished. Nil means the host's first traffic as
	// the reference sensor models it: sensor.Synthesize (an event reaching
	// every field the content references) then DefaultFirstEvents events of
	// sensor.RandomEvents seeded with Seed.
	FirstEvents func(*validator.ChannelFile) []sensor.Event
	// Seed seeds the default first events.
	Seed uint64
}

// Loaded is the outcome of one load.
type Loaded struct {
	// Channel is the channel loaded (the Installer's).
	Channel uint32
	// Boot is what the loader contract decided and did.
	Boot installer.BootResult
	// Program is the loaded content, nil when the contract chose to load no
	// content (safe mode, or nothing installed).
	Program *sensor.Program
	// Events is how many first events the program survived.
	Events int

	in *installer.Installer // the channel's, for Stopped
}

// ErrLoadFailed wraps an interpreter's refusal of content that passed slot
// verification (a template type it does not know, say). The load did not
// finish: the breadcrumb stays LOADING, and the caller should exit the way a
// crashed agent would, so the next start falls back.
var ErrLoadFailed = errors.New("loader: the interpreter refused the content")

// Load runs the loader contract against in and loads the chosen content.
// An interpreter panic on the first events is not recovered: it ends the
// process with the breadcrumb LOADING on disk.
func Load(in *installer.Installer, opts Options) (Loaded, error) {
	if opts.Capabilities == nil {
		return Loaded{}, errors.New("loader: no capabilities")
	}
	res, err := in.Boot(false)
	out := Loaded{Channel: in.Ch(), Boot: res, in: in}
	if err != nil {
		return out, err
	}
	d := res.Decision
	if d.Action != bootguard.ActionLoad {
		return out, nil
	}
	data, err := installer.ReadContent(in.SlotDir(d.Slot), d.Entry.Digest)
	if err != nil {
		return out, fmt.Errorf("loader: slot %v: %w", d.Slot, err)
	}
	prog, err := sensor.New(opts.Capabilities).Load(data)
	if err != nil {
		return out, fmt.Errorf("%w: slot %v (channel %d version %d): %v", ErrLoadFailed, d.Slot, d.Entry.Channel, d.Entry.Version, err)
	}
	first := opts.FirstEvents
	if first == nil {
		first = func(f *validator.ChannelFile) []sensor.Event { return DefaultEvents(f, opts.Seed) }
	}
	for _, ev := range first(prog.File()) {
		prog.Eval(ev)
		out.Events++
	}
	if in.ReadOnly() {
		out.Program = prog
		return out, nil
	}
	if err := bootguard.MarkLoaded(in.RecordPath()); err != nil {
		return out, fmt.Errorf("loader: record the finished load: %w", err)
	}
	out.Boot.Loaded = true
	out.Program = prog
	return out, nil
}

// Stopped records a clean stop of the agent (Installer.MarkStopped) on each
// channel of loaded whose trial this process loaded to the end (Load marked
// it LOADED): the next start loads that trial again without spending a try.
// Call it only once the agent no longer evaluates the content, just before
// it exits; a crash must never get here, or it would be taken for a clean
// stop. It writes only the boot records, so it may be called after the
// Installer was closed. It goes on past a channel it cannot write and
// returns the errors joined.
func Stopped(loaded []Loaded) error {
	var errs []error
	for _, l := range loaded {
		if l.in == nil || !l.Boot.Loaded || l.Boot.Decision.Entry.State != bootguard.StateTrial {
			continue
		}
		if err := l.in.MarkStopped(); err != nil {
			errs = append(errs, fmt.Errorf("loader: channel %d: record the clean stop: %w", l.Channel, err))
		}
	}
	return errors.Join(errs...)
}

// DefaultEvents is the reference sensor's model of a host's first traffic
// for f: the synthesized events, then DefaultFirstEvents random ones.
func DefaultEvents(f *validator.ChannelFile, seed uint64) []sensor.Event {
	evs := sensor.Synthesize(f)
	next := sensor.RandomEvents(f, seed)
	for range DefaultFirstEvents {
		evs = append(evs, next())
	}
	return evs
}

// LoadAll loads every channel of the root in, in ascending order (the
// order docs/boot-record.md fixes), each through Load on its own boot
// record: a crash while loading channel N leaves N's breadcrumb LOADING and
// the channels after it unselected. It stops at the first error. A root
// with no channel yet gives no result.
func LoadAll(in *installer.Installer, opts Options) ([]Loaded, error) {
	var out []Loaded
	for _, ch := range in.Channels() {
		c, err := in.Channel(ch)
		if err != nil {
			return out, err
		}
		l, err := Load(c, opts)
		out = append(out, l)
		if err != nil {
			return out, fmt.Errorf("channel %d: %w", ch, err)
		}
	}
	return out, nil
}

package powercut_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/hostdb"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/loader"
	"github.com/ringfence/ringfence/powercut"
	"github.com/ringfence/ringfence/validator"
)

// The content the host scenarios install, channel 291.
const (
	v1, v2, v3 uint32 = 1001, 1002, 1003
)

// host is what the host scenarios share: the capabilities and the content.
type host struct {
	caps *validator.Capabilities
	data map[uint32][]byte
}

// newHost reads the test data; it runs in child processes too, with no
// testing.T.
func newHost() *host {
	caps, err := validator.LoadCapabilities(filepath.Join(testfiles.Dir(), "capabilities", "sensor-7.11.json"))
	if err != nil {
		panic(err)
	}
	h := &host{caps: caps, data: map[uint32][]byte{}}
	for _, v := range []uint32{v1, v2, v3} {
		b, err := os.ReadFile(filepath.Join(testfiles.Dir(), "channels", fmt.Sprintf("good-ipc-%d.rfch", v)))
		if err != nil {
			panic(err)
		}
		h.data[v] = b
		// The same content on channel 292, versions 2001 to 2003.
		f, err := validator.Parse(b)
		if err != nil {
			panic(err)
		}
		f.Channel, f.ContentVersion = 292, v+1000
		if h.data[v+1000], err = validator.Encode(f); err != nil {
			panic(err)
		}
	}
	return h
}

func (h *host) open(root string) (*installer.Installer, error) {
	return installer.Open(root, installer.Options{Capabilities: h.caps})
}

// with opens root, runs fn on channel 291's installer, and closes.
func (h *host) with(root string, fn func(in *installer.Installer) error) error {
	in, err := h.open(root)
	if err != nil {
		return err
	}
	err = fn(in)
	return errors.Join(err, in.Close())
}

// on291 opens root and runs fn on channel 291's installer.
func (h *host) on291(root string, fn func(c *installer.Installer) error) error {
	return h.with(root, func(in *installer.Installer) error {
		c, err := in.Channel(291)
		if err != nil {
			return err
		}
		return fn(c)
	})
}

// stage checks and stages v, without activating it.
func (h *host) stage(in *installer.Installer, v uint32) error {
	c, err := in.Check(h.data[v])
	if err != nil {
		return err
	}
	_, err = in.Stage(c, installer.StageOptions{})
	return err
}

func (h *host) install(in *installer.Installer, v uint32) (*installer.Installer, error) {
	st, _, err := in.Install(h.data[v], installer.StageOptions{})
	if err != nil {
		return nil, fmt.Errorf("install %d: %w", v, err)
	}
	return in.Channel(st.Channel)
}

// good installs v and takes it through a boot and its health window.
func (h *host) good(v uint32) func(in *installer.Installer) error {
	return func(in *installer.Installer) error {
		c, err := h.install(in, v)
		if err != nil {
			return err
		}
		if _, err := c.Boot(true); err != nil {
			return err
		}
		_, err = c.MarkGood()
		return err
	}
}

// trial installs v1 good, then v2 as a trial, booted (loaded) or not.
func (h *host) trial(loaded bool) func(root string) error {
	return func(root string) error {
		return h.with(root, func(in *installer.Installer) error {
			if err := h.good(v1)(in); err != nil {
				return err
			}
			c, err := h.install(in, v2)
			if err != nil || !loaded {
				return err
			}
			_, err = c.Boot(true)
			return err
		})
	}
}

// expect is what must hold after a cut in a host scenario.
type expect struct {
	// before is the last-known-good before the operation (0: none); after
	// the version the operation brings. Only these may load, and when
	// there was a last-known-good, something must.
	before, after uint32
	// promotes: the operation may make after GOOD.
	promotes bool
	// fromSafeMode: the record had no valid copy before the operation.
	fromSafeMode bool
	// also are versions that may load too (a trial the operation reverts).
	also []uint32
	// never are versions that must not load after any cut; neverAfter,
	// those that must not once the operation passed a mark.
	never      []uint32
	neverAfter map[string][]uint32
	// quarantined returns versions that must stay quarantined after c.
	quarantined func(c powercut.Cut) []uint32
	// loading is the mark after which the trial's load began: from there
	// on, the record must say so (a crash during the load must be seen).
	loading string
	// final and finalState are what the active slot holds once the
	// operation returned (powercut.MarkDone): what it did must survive
	// (final 0: not checked).
	final      uint32
	finalState bootguard.State
}

// checkHost opens the state a cut left with the real installer and loader
// and checks the host invariants (docs/boot-record.md, "Power cuts").
func (h *host) checkHost(want expect) func(c powercut.Cut) error {
	return func(c powercut.Cut) error {
		var errs powercut.Errors
		root, err := h.open(c.Root)
		if err != nil {
			return fmt.Errorf("installer.Open: %w", err) // state.db must open or be moved aside
		}
		defer root.Close()
		in, err := root.Channel(291)
		if err != nil {
			if want.before == 0 {
				return nil // the first install's channel never reached the disk
			}
			return fmt.Errorf("channel 291: %w", err)
		}
		rec, err := bootguard.Read(in.RecordPath())
		switch {
		case err != nil && want.fromSafeMode:
			// Cut before the rebuilt record was durable: still in safe
			// mode, and running the recovery again gets out of it.
			if _, rerr := in.Recover(installer.TargetLastGood, false); rerr != nil {
				return fmt.Errorf("recover again from safe mode: %w", rerr)
			}
			if rec, err = bootguard.Read(in.RecordPath()); err != nil {
				return fmt.Errorf("after recovering again: %w", err)
			}
		case err != nil && want.before == 0 && errors.Is(err, os.ErrNotExist):
			return nil
		case err != nil:
			return fmt.Errorf("boot record: %w (it must keep a valid copy)", err)
		}
		d := bootguard.Decide(rec, true)
		allowed := append([]uint32{want.before, want.after}, want.also...)
		never := want.never
		for m, vs := range want.neverAfter {
			if c.Passed(m) {
				never = append(never, vs...)
			}
		}
		switch {
		case want.before == 0 && d.Action != bootguard.ActionLoad:
		case want.before != 0 && d.Action != bootguard.ActionLoad:
			errs.Add("the next boot loads nothing (%v); last-known-good %d was installed", d, want.before)
		case !slices.Contains(allowed, d.Entry.Version):
			errs.Add("the next boot loads version %d; only %v may load", d.Entry.Version, allowed)
		case slices.Contains(never, d.Entry.Version):
			errs.Add("the next boot loads version %d again: it crashed while loading or was reverted", d.Entry.Version)
		}
		if d.Action == bootguard.ActionLoad {
			if _, err := installer.VerifySlot(in.SlotDir(d.Slot), d.Entry.Digest); err != nil {
				errs.Add("the next boot loads slot %v, which does not verify: %v", d.Slot, err)
			}
		}
		if want.final != 0 && c.Passed(powercut.MarkDone) {
			if a := rec.Active; a == bootguard.SlotNone || rec.Entry(a).Version != want.final || rec.Entry(a).State != want.finalState {
				errs.Add("the operation returned, and the record does not hold its result (active %v: %+v; want version %d %v)", a, activeEntry(rec), want.final, want.finalState)
			}
		}
		for _, s := range []bootguard.Slot{bootguard.SlotA, bootguard.SlotB} {
			e := rec.Entry(s)
			switch e.State {
			case bootguard.StateStaged, bootguard.StateTrial, bootguard.StateGood:
				// The record never names a slot whose files are not
				// complete: a half-written slot is EMPTY (claimed) or BAD.
				if _, err := installer.VerifySlot(in.SlotDir(s), e.Digest); err != nil {
					errs.Add("the record says slot %v holds %v version %d, and its files do not verify: %v", s, e.State, e.Version, err)
				}
			}
			if !want.promotes && e.Version == want.after && e.State == bootguard.StateGood {
				errs.Add("version %d became GOOD without its health window", want.after)
			}
			if want.loading != "" && c.Passed(want.loading) && s == rec.Active && e.State == bootguard.StateTrial && e.Crumb == bootguard.CrumbNone {
				errs.Add("the trial's load began but the record shows no breadcrumb: a crash while loading would go unseen")
			}
		}
		if want.quarantined != nil {
			q, err := root.Quarantined()
			if err != nil {
				errs.Add("quarantine list: %v", err)
			}
			for _, v := range want.quarantined(c) {
				listed := slices.ContainsFunc(q, func(e hostdb.Quarantine) bool { return e.Channel == 291 && e.Version == v })
				bad := false
				for _, s := range []bootguard.Slot{bootguard.SlotA, bootguard.SlotB} {
					e := rec.Entry(s)
					bad = bad || e.Version == v && e.State == bootguard.StateBad
				}
				if !listed && !bad {
					errs.Add("version %d was reverted and reported, and is quarantined nowhere (state.db or the boot record)", v)
				}
			}
		}
		// And the host goes on: the real loader runs the contract, loads
		// verified content into the interpreter and survives its first
		// events.
		ld, err := loader.Load(in, loader.Options{Capabilities: h.caps})
		if err != nil {
			errs.Add("the next boot: %v", err)
		}
		res := ld.Boot
		for _, n := range res.Notes {
			if strings.Contains(n, "failed verification") {
				errs.Add("the next boot: %s", n)
			}
		}
		if want.before != 0 && res.Decision.Action != bootguard.ActionLoad {
			errs.Add("the next boot loads nothing: %v", res.Decision)
		}
		return errs.Err()
	}
}

func activeEntry(rec bootguard.Record) bootguard.Entry {
	if rec.Active == bootguard.SlotNone {
		return bootguard.Entry{}
	}
	return *rec.Entry(rec.Active)
}

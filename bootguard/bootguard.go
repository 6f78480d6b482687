package bootguard

import (
	"errors"
	"fmt"
	"io/fs"
)

// Policy is how much a trial may go wrong before it is reverted. Activate
// copies it into the slot's entry, so the loader needs no configuration.
type Policy struct {
	// Tries is the number of boots a trial gets before it must have been
	// marked good (default 2): each load spends one, except the load after
	// a clean stop (MarkStopped). So a crash after the load finished, or a
	// reboot the agent did not stop cleanly before, during the health
	// window spends one; a clean reboot does not.
	Tries uint8
	// LoadTries is the number of crashes while loading (breadcrumb still
	// LOADING at the next boot) a trial may suffer (default 1: a crash while
	// loading is the strongest evidence there is, and the 2024 failure mode).
	LoadTries uint8
}

// DefaultPolicy returns the default tries (docs/boot-record.md has the
// reasons).
func DefaultPolicy() Policy { return Policy{Tries: 2, LoadTries: 1} }

// Check reports a policy the loader could not honour.
func (p Policy) Check() error {
	if p.Tries < 1 || p.LoadTries < 1 || p.LoadTries > p.Tries {
		return fmt.Errorf("bootguard: tries %d, load tries %d: need 1 <= load tries <= tries <= 255", p.Tries, p.LoadTries)
	}
	return nil
}

// Init creates the record file at path, empty (no active slot), if it does
// not exist. An existing file is left alone if it has a valid copy; if it has
// none, Init returns ErrNoValidCopy rather than erase what is there (offline
// recovery rebuilds it with Rebuild).
func Init(path string) (created bool, err error) {
	data, err := readFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return true, createFile(path, Record{})
	}
	if err != nil {
		return false, err
	}
	if _, _, ok := Pick(data); !ok {
		return false, fmt.Errorf("%w (%s)", ErrNoValidCopy, path)
	}
	return false, nil
}

// Rebuild replaces the record file with r in both copies, whatever it held.
// It is for offline recovery of a record with no valid copy; everything else
// updates the record in place. If the file still has a valid copy that r's
// sequence number is not Newer than, r gets that copy's sequence + 1, so the
// sequence keeps moving forward.
func Rebuild(path string, r Record) error {
	unlock, err := lockFile(path+lockSuffix, LockTimeout)
	if err != nil {
		return err
	}
	defer unlock()
	if data, err := readFile(path); err == nil {
		if cur, _, ok := Pick(data); ok && !Newer(r.Seq, cur.Seq) {
			r.Seq = cur.Seq + 1
		}
	}
	return createFile(path, r)
}

// Read returns the current record: the valid copy with the higher sequence.
func Read(path string) (Record, error) {
	data, err := readFile(path)
	if err != nil {
		return Record{}, err
	}
	r, _, ok := Pick(data)
	if !ok {
		return Record{}, fmt.Errorf("%w (%s)", ErrNoValidCopy, path)
	}
	return r, nil
}

// Select runs the loader contract against the record file: it reads the
// record, decides (see Decide), writes what the decision needs durably, and
// only then returns the slot to load. It always returns a decision: when the
// record cannot be read or has no valid copy, that is safe mode (load
// nothing), with the error saying why when there is one beyond "no valid
// copy". A failed write is an error with a safe-mode decision too: loading a
// trial whose breadcrumb is not on disk would defeat the guard.
func Select(path string) (Decision, error) {
	var d Decision
	_, err := update(path, func(r *Record) (bool, error) {
		d = Decide(*r, true)
		if d.Write {
			*r = d.Next
		}
		return d.Write, nil
	})
	switch {
	case err == nil:
		return d, nil
	case errors.Is(err, ErrNoValidCopy), errors.Is(err, fs.ErrNotExist):
		return Decide(Record{}, false), nil
	}
	return Decide(Record{}, false), err
}

// MarkLoaded records that the trial's load finished and the agent survived
// its first events (breadcrumb LOADED). For GOOD content it does nothing and
// writes nothing.
func MarkLoaded(path string) error {
	_, err := update(path, func(r *Record) (bool, error) {
		if r.Active == SlotNone {
			return false, ErrNoTrial
		}
		e := r.Entry(r.Active)
		switch {
		case e.State == StateGood:
			return false, nil
		case e.State != StateTrial:
			return false, fmt.Errorf("%w: slot %v is %v", ErrNoTrial, r.Active, e.State)
		case e.Crumb == CrumbLoaded:
			return false, nil
		}
		e.Crumb = CrumbLoaded
		return true, nil
	})
	return err
}

// MarkStopped records that the agent stopped cleanly after the trial had
// loaded: an active TRIAL whose breadcrumb is LOADED gets the breadcrumb
// STOPPED, and the next boot loads it again without spending a try (Decide).
// The agent calls it once it has stopped running the content, before it
// exits, so a crash after the write is never the content's: a crash while
// the content runs leaves LOADING or LOADED, never STOPPED. Anything else
// (GOOD content, no active slot, a load that did not finish, a stop already
// recorded) writes nothing and returns nil.
func MarkStopped(path string) error {
	_, err := update(path, func(r *Record) (bool, error) {
		if r.Active == SlotNone {
			return false, nil
		}
		e := r.Entry(r.Active)
		if e.State != StateTrial || e.Crumb != CrumbLoaded {
			return false, nil
		}
		e.Crumb = CrumbStopped
		return true, nil
	})
	return err
}

// MarkGood promotes the trial to last-known-good once its health window has
// passed. The trial must have loaded (MarkLoaded) in this boot; a trial whose
// agent then stopped cleanly (MarkStopped: the breadcrumb STOPPED) loaded
// too, so an operator who stops the agent to mark it good by hand can. The
// previous good slot keeps its content and state, but stops being the
// fallback: it is the slot the next update is staged into.
func MarkGood(path string) (Record, error) {
	return update(path, func(r *Record) (bool, error) {
		if r.Active == SlotNone {
			return false, ErrNoTrial
		}
		e := r.Entry(r.Active)
		if e.State != StateTrial {
			return false, fmt.Errorf("%w: slot %v is %v", ErrNoTrial, r.Active, e.State)
		}
		if e.Crumb != CrumbLoaded && e.Crumb != CrumbStopped {
			return false, fmt.Errorf("%w (slot %v, breadcrumb %v)", ErrNotLoaded, r.Active, e.Crumb)
		}
		e.State, e.Tries, e.LoadTries, e.Crumb, e.Reason = StateGood, 0, 0, CrumbNone, ReasonNone
		r.Fallback = SlotNone
		return true, nil
	})
}

// MarkBad reverts the active slot (TRIAL or GOOD) with reason: it becomes
// BAD and the other slot, if GOOD, becomes active. The next Select loads
// that, or nothing.
func MarkBad(path string, reason Reason) (Record, error) {
	if reason == ReasonNone || reason > ReasonCorrupt {
		return Record{}, fmt.Errorf("bootguard: MarkBad needs a reason, got %v", reason)
	}
	return update(path, func(r *Record) (bool, error) {
		if r.Active == SlotNone {
			return false, fmt.Errorf("%w: no active slot", ErrSlotState)
		}
		e := r.Entry(r.Active)
		if e.State != StateTrial && e.State != StateGood {
			return false, fmt.Errorf("%w: active slot %v is %v", ErrSlotState, r.Active, e.State)
		}
		revert(r, reason)
		return true, nil
	})
}

// revert marks the active slot BAD and makes the other slot active if it is
// GOOD, else no slot.
func revert(r *Record, reason Reason) {
	e := r.Entry(r.Active)
	e.State, e.Reason, e.Crumb, e.Tries, e.LoadTries = StateBad, reason, CrumbNone, 0, 0
	other := r.Active.Other()
	r.Active, r.Fallback = SlotNone, SlotNone
	if r.Entry(other).State == StateGood {
		r.Active = other
	}
}

// Recover is offline recovery: it makes slot to active (to must be GOOD, or
// SlotNone for "load nothing"). The slot it moves away from, if it was on
// trial or good, becomes BAD with ReasonRecovered, so it is never retried.
func Recover(path string, to Slot) (Record, error) {
	return update(path, func(r *Record) (bool, error) {
		if to != SlotNone && r.Entry(to).State != StateGood {
			return false, fmt.Errorf("%w: slot %v is %v; only GOOD content can be recovered to", ErrSlotState, to, r.Entry(to).State)
		}
		if r.Active == to && r.Fallback == SlotNone {
			return false, nil
		}
		if old := r.Active; old != SlotNone && old != to {
			if s := r.Entry(old).State; s == StateTrial || s == StateGood {
				e := r.Entry(old)
				e.State, e.Reason, e.Crumb, e.Tries, e.LoadTries = StateBad, ReasonRecovered, CrumbNone, 0, 0
			}
		}
		r.Active, r.Fallback = to, SlotNone
		return true, nil
	})
}

// Activate puts a STAGED slot on trial: it becomes active with the policy's
// tries, and the current active slot, if GOOD, becomes its fallback.
func Activate(path string, slot Slot, pol Policy) (Record, error) {
	if err := pol.Check(); err != nil {
		return Record{}, err
	}
	if slot != SlotA && slot != SlotB {
		return Record{}, fmt.Errorf("bootguard: Activate(%v): need slot a or b", slot)
	}
	return update(path, func(r *Record) (bool, error) {
		return true, activate(r, slot, pol)
	})
}

// activate puts STAGED slot on trial in r (see Activate).
func activate(r *Record, slot Slot, pol Policy) error {
	if r.Active == slot {
		return fmt.Errorf("%w: slot %v is already active", ErrSlotState, slot)
	}
	if r.Active != SlotNone && r.Entry(r.Active).State == StateTrial {
		return ErrTrialInProgress
	}
	e := r.Entry(slot)
	if e.State != StateStaged {
		return fmt.Errorf("%w: slot %v is %v, not STAGED", ErrSlotState, slot, e.State)
	}
	e.State, e.Tries, e.LoadTries, e.Crumb, e.Reason = StateTrial, pol.Tries, pol.LoadTries, CrumbNone, ReasonNone
	r.Fallback = SlotNone
	if r.Active != SlotNone && r.Entry(r.Active).State == StateGood {
		r.Fallback = r.Active
	}
	r.Active = slot
	return nil
}

// BeginStage claims slot for new content: its entry becomes EMPTY (so a crash
// while its files are written leaves nothing loadable) before any file in it
// changes. It refuses the active slot, and any slot while a trial is in
// progress (the other slot is then the trial's fallback).
func BeginStage(path string, slot Slot) (Record, error) {
	if slot != SlotA && slot != SlotB {
		return Record{}, fmt.Errorf("bootguard: BeginStage(%v): need slot a or b", slot)
	}
	return update(path, func(r *Record) (bool, error) {
		if r.Active == slot {
			return false, fmt.Errorf("%w (slot %v)", ErrActiveSlot, slot)
		}
		if r.Active != SlotNone && r.Entry(r.Active).State == StateTrial {
			return false, ErrTrialInProgress
		}
		if *r.Entry(slot) == (Entry{}) && r.Fallback != slot {
			return false, nil
		}
		*r.Entry(slot) = Entry{}
		if r.Fallback == slot {
			r.Fallback = SlotNone
		}
		return true, nil
	})
}

// FinishStage records that slot holds verified content: channel, version and
// the digest of its manifest. The slot must have been claimed by BeginStage.
func FinishStage(path string, slot Slot, channel, version uint32, digest [32]byte) (Record, error) {
	if slot != SlotA && slot != SlotB {
		return Record{}, fmt.Errorf("bootguard: FinishStage(%v): need slot a or b", slot)
	}
	return update(path, func(r *Record) (bool, error) {
		return true, finishStage(r, slot, channel, version, digest)
	})
}

// FinishStageActivate is FinishStage and Activate in one record write: the
// slot, claimed by BeginStage, holds verified content and goes on trial at
// once. A power cut leaves the record as it was (the slot claimed, EMPTY)
// or with the trial active, and it costs one sync where the two calls cost
// two. It refuses what either refuses, and then writes nothing.
func FinishStageActivate(path string, slot Slot, channel, version uint32, digest [32]byte, pol Policy) (Record, error) {
	if err := pol.Check(); err != nil {
		return Record{}, err
	}
	if slot != SlotA && slot != SlotB {
		return Record{}, fmt.Errorf("bootguard: FinishStageActivate(%v): need slot a or b", slot)
	}
	return update(path, func(r *Record) (bool, error) {
		if err := finishStage(r, slot, channel, version, digest); err != nil {
			return false, err
		}
		return true, activate(r, slot, pol)
	})
}

// finishStage marks claimed slot STAGED in r (see FinishStage).
func finishStage(r *Record, slot Slot, channel, version uint32, digest [32]byte) error {
	if r.Active == slot || *r.Entry(slot) != (Entry{}) {
		return fmt.Errorf("%w: slot %v is %v (active %v); call BeginStage first", ErrSlotState, slot, r.Entry(slot).State, r.Active)
	}
	*r.Entry(slot) = Entry{Channel: channel, Version: version, Digest: digest, State: StateStaged}
	return nil
}

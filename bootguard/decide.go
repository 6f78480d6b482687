package bootguard

import "fmt"

// Action is what the loader does.
type Action uint8

// The actions.
const (
	// ActionLoad: load Decision.Slot.
	ActionLoad Action = 1
	// ActionNoContent: load no content; the record is valid but holds
	// nothing loadable (a fresh host, or a revert with no last-known-good).
	ActionNoContent Action = 2
	// ActionSafeMode: load no content; neither copy of the record is valid.
	ActionSafeMode Action = 3
)

func (a Action) String() string {
	switch a {
	case ActionLoad:
		return "load"
	case ActionNoContent:
		return "none"
	case ActionSafeMode:
		return "safe"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Why explains a decision. The strings are stable: the test vectors, the
// C loader, logs and telemetry use them.
type Why string

// The explanations.
const (
	WhyGood           Why = "good"            // the active slot is last-known-good
	WhyTrial          Why = "trial"           // the active slot is on trial and loads (a try spent, or none after a clean stop)
	WhyLoadCrash      Why = "load-crash"      // the last trial load never finished: reverted
	WhyTriesExhausted Why = "tries-exhausted" // the trial used up its boots: reverted
	WhyNotLoadable    Why = "not-loadable"    // the active slot is neither GOOD nor TRIAL
	WhyNoContent      Why = "no-content"      // no active slot
	WhyNoValidCopy    Why = "no-valid-copy"   // neither copy of the record is valid (safe mode)
)

// Decision is the outcome of the loader contract for one boot.
type Decision struct {
	Action Action
	// Slot and Entry are the slot to load and what the record says about it
	// (after the decision's update), for ActionLoad.
	Slot  Slot
	Entry Entry
	Why   Why
	// Reverted is the slot this decision marked BAD, if any.
	Reverted Slot
	// Write says the record must be written (Next) durably before the
	// load; Next.Seq is already one past the current record's (2^64-1
	// wraps to 0, which is Newer).
	Write bool
	Next  Record
}

// String is the canonical one-line form the test vectors use.
func (d Decision) String() string {
	return fmt.Sprintf("action=%v slot=%v channel=%d version=%d why=%s reverted=%v write=%d",
		d.Action, d.Slot, d.Entry.Channel, d.Entry.Version, d.Why, d.Reverted, b2i(d.Write))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Decide is the loader contract of docs/design.md as a pure function of the
// current record (ok false: no valid copy). It never looks at the clock, the
// network or the slots' files; bootguard/c implements the same function and
// the vectors in testdata/bootrecord hold the two to the same answers.
//
//  1. No valid copy: load nothing (safe mode).
//  2. Active GOOD: load it; nothing is written.
//  3. Active TRIAL whose breadcrumb says STOPPED: the last load finished and
//     the agent stopped cleanly (MarkStopped), which says nothing against the
//     content. The trial loads again without spending a try, even with no
//     tries left (the boot that loaded it spent its try then): the
//     breadcrumb becomes LOADING, the record is written, then it loads.
//  4. Active TRIAL whose breadcrumb still says LOADING: the last load never
//     finished. That spends a load try; with none left the slot becomes BAD
//     (load-crash). A trial with no boots left becomes BAD (tries-exhausted).
//     A BAD trial hands over to the fallback, if the fallback is GOOD, and
//     the record is written before the fallback loads.
//  5. Otherwise (breadcrumb NONE, or LOADED: a crash or an unclean stop
//     after the load) a TRIAL spends one boot, its breadcrumb becomes
//     LOADING, the record is written, and only then is the trial loaded.
//  6. Active slot neither GOOD nor TRIAL: the fallback, if GOOD; otherwise
//     nothing.
func Decide(cur Record, ok bool) Decision {
	if !ok {
		return Decision{Action: ActionSafeMode, Why: WhyNoValidCopy}
	}
	next := cur
	next.Seq = cur.Seq + 1
	a := cur.Active
	if a == SlotNone {
		return Decision{Action: ActionNoContent, Why: WhyNoContent}
	}
	e := next.Entry(a)
	switch e.State {
	case StateGood:
		return Decision{Action: ActionLoad, Slot: a, Entry: *e, Why: WhyGood}
	case StateTrial:
		// After a clean stop (STOPPED) nothing is spent, Tries 0 included:
		// a STOPPED trial with no tries left loads, and the next crash of
		// any kind (LOADING or LOADED at the boot after) reverts it.
		if e.Crumb != CrumbStopped {
			var fail Reason
			if e.Crumb == CrumbLoading {
				if e.LoadTries > 0 {
					e.LoadTries--
				}
				if e.LoadTries == 0 {
					fail = ReasonLoadCrash
				}
			}
			if fail == ReasonNone && e.Tries == 0 {
				fail = ReasonTriesExhausted
			}
			if fail != ReasonNone {
				e.State, e.Reason, e.Crumb = StateBad, fail, CrumbNone
				why := WhyLoadCrash
				if fail == ReasonTriesExhausted {
					why = WhyTriesExhausted
				}
				return fallBack(next, a, why)
			}
			e.Tries--
		}
		e.Crumb = CrumbLoading
		return Decision{Action: ActionLoad, Slot: a, Entry: *e, Why: WhyTrial, Write: true, Next: next}
	}
	return fallBack(next, SlotNone, WhyNotLoadable)
}

// fallBack makes the fallback active if it is GOOD. reverted is the slot just
// marked BAD in next (SlotNone if none).
func fallBack(next Record, reverted Slot, why Why) Decision {
	fb := next.Fallback
	if fb != SlotNone && fb != next.Active && next.Entry(fb).State == StateGood {
		next.Active, next.Fallback = fb, SlotNone
		return Decision{Action: ActionLoad, Slot: fb, Entry: *next.Entry(fb), Why: why, Reverted: reverted, Write: true, Next: next}
	}
	if reverted == SlotNone {
		// Nothing changed: do not write on every boot.
		return Decision{Action: ActionNoContent, Why: why}
	}
	next.Active, next.Fallback = SlotNone, SlotNone
	return Decision{Action: ActionNoContent, Why: why, Reverted: reverted, Write: true, Next: next}
}

package bootguard

import "errors"

var (
	// ErrNoValidCopy is returned when neither copy of the boot record is
	// valid. The loader must then load no content (safe mode).
	ErrNoValidCopy = errors.New("bootguard: no valid copy of the boot record; load no content (safe mode) and run 'ringfence recover'")
	// ErrTrialInProgress is returned when an operation would disturb a trial
	// that has not ended: its fallback must stay intact until the trial is
	// marked good or bad.
	ErrTrialInProgress = errors.New("bootguard: a trial is in progress; wait for it to be marked good, or revert it, first")
	// ErrNotLoaded is returned by MarkGood when the trial's load never
	// finished: a trial is promoted only after it loaded and survived.
	ErrNotLoaded = errors.New("bootguard: the trial content has not finished loading; it cannot be marked good")
	// ErrNoTrial is returned by MarkLoaded and MarkGood when the active slot
	// is not on trial.
	ErrNoTrial = errors.New("bootguard: the active slot is not on trial")
	// ErrSlotState is returned when a slot is not in the state an operation
	// needs (for example Activate of a slot that is not staged).
	ErrSlotState = errors.New("bootguard: slot is not in the required state")
	// ErrActiveSlot is returned when staging would overwrite the active slot.
	ErrActiveSlot = errors.New("bootguard: refusing to touch the active slot")
)

// ErrLocked is returned when another process holds the record's lock file
// for longer than LockTimeout.
var ErrLocked = errors.New("bootguard: boot record is locked")

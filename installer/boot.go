package installer

import (
	"fmt"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/internal/failpoint"
)

// Failpoints of MarkGood and Revert, after the boot record was written and
// before state.db was.
const (
	FailpointMarkGoodRecord = "installer/mark-good/after-record"
	FailpointRevertRecord   = "installer/revert/after-record"
)

// maxBootRounds bounds Boot's retries after a slot fails verification: each
// round marks one slot BAD, and there are two.
const maxBootRounds = 3

// BootResult is what one run of the loader contract decided and did.
type BootResult struct {
	Decision bootguard.Decision
	// Loaded is true when the load was recorded as finished (MarkLoaded).
	Loaded bool
	// Notes say what else happened: slots that failed verification and were
	// reverted, reverts recorded in state.db.
	Notes []string
}

// Boot runs the loader contract once, as a loader does at boot: Select (which
// writes the breadcrumb before a trial loads), then it verifies the chosen
// slot against its manifest; a slot that fails verification is marked BAD
// (corrupt) and the contract runs again. With markLoaded it then records that
// the load finished (MarkLoaded); without, the breadcrumb stays LOADING, as
// after a crash during the load. On a read-only root it only reports the
// decision.
func (in *Installer) Boot(markLoaded bool) (BootResult, error) {
	if in.Ch() == 0 {
		if len(in.Channels()) == 0 {
			return BootResult{Decision: bootguard.Decide(bootguard.Record{}, true), Notes: []string{"the root follows no channel yet: no content"}}, nil
		}
		return BootResult{}, ErrNoChannel
	}
	if in.readOnly {
		rec, err := bootguard.Read(in.RecordPath())
		return BootResult{Decision: bootguard.Decide(rec, err == nil), Notes: []string{"read-only: decided, nothing written"}}, nil
	}
	var res BootResult
	for range maxBootRounds {
		d, err := bootguard.Select(in.RecordPath())
		res.Decision = d
		if err != nil {
			return res, err
		}
		if d.Reverted != bootguard.SlotNone {
			in.quarantine(d.Reverted, *d.Next.Entry(d.Reverted), bootguard.StateTrial, string(d.Why))
			res.Notes = append(res.Notes, fmt.Sprintf("slot %v reverted (%s) and quarantined", d.Reverted, d.Why))
		}
		if d.Action != bootguard.ActionLoad {
			return res, nil
		}
		if _, verr := VerifySlot(in.SlotDir(d.Slot), d.Entry.Digest); verr != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("slot %v failed verification, reverted: %v", d.Slot, verr))
			if _, err := bootguard.MarkBad(in.RecordPath(), bootguard.ReasonCorrupt); err != nil {
				return res, err
			}
			in.quarantine(d.Slot, d.Entry, d.Entry.State, "corrupt: "+verr.Error())
			continue
		}
		if markLoaded {
			if err := bootguard.MarkLoaded(in.RecordPath()); err != nil {
				return res, err
			}
			res.Loaded = true
		}
		return res, nil
	}
	return res, fmt.Errorf("installer: no slot verified after %d rounds", maxBootRounds)
}

// MarkStopped records that the agent stopped cleanly after it loaded the
// Installer's channel (bootguard.MarkStopped): if that channel's trial had
// loaded (breadcrumb LOADED), the next boot loads it again without spending
// a try. Call it only once the agent no longer runs the content, just before
// it exits. It does nothing on a read-only root, without a channel, or when
// the channel is not in a trial that loaded. It writes only the boot record,
// never state.db, so an agent that handed state.db back (Close) after its
// load may still call it.
func (in *Installer) MarkStopped() error {
	if in.readOnly || in.Ch() == 0 {
		return nil
	}
	return bootguard.MarkStopped(in.RecordPath())
}

// MarkGood ends the trial's health window: the trial becomes last-known-good.
// Quarantine entries of older versions of its channel go: a newer version is
// installed and good.
func (in *Installer) MarkGood() (bootguard.Record, error) {
	if err := in.changeable(); err != nil {
		return bootguard.Record{}, err
	}
	rec, err := bootguard.MarkGood(in.RecordPath())
	if err != nil {
		return rec, err
	}
	failpoint.Hit(FailpointMarkGoodRecord)
	e := *rec.Entry(rec.Active)
	in.history(transition(rec.Active, e, bootguard.StateTrial, bootguard.StateGood, "health window passed"))
	if in.db != nil {
		qs, err := in.db.Quarantined()
		if err == nil {
			for _, q := range qs {
				if q.Channel == e.Channel && q.Version < e.Version {
					_ = in.db.Unquarantine(q.Channel, q.Version)
				}
			}
		}
	}
	return rec, nil
}

// Revert marks the active content BAD with reason, makes the other slot
// active if it holds good content, and quarantines the reverted version.
func (in *Installer) Revert(reason bootguard.Reason) (bootguard.Record, error) {
	if err := in.changeable(); err != nil {
		return bootguard.Record{}, err
	}
	before, err := bootguard.Read(in.RecordPath())
	if err != nil {
		return before, err
	}
	rec, err := bootguard.MarkBad(in.RecordPath(), reason)
	if err != nil {
		return rec, err
	}
	failpoint.Hit(FailpointRevertRecord)
	in.quarantine(before.Active, *before.Entry(before.Active), before.Entry(before.Active).State, reason.String())
	return rec, nil
}

// changeable reports why the Installer's boot record cannot be changed: a
// read-only root, or no channel to act on.
func (in *Installer) changeable() error {
	if in.readOnly {
		return ErrReadOnly
	}
	if in.Ch() == 0 {
		return ErrNoChannel
	}
	return nil
}

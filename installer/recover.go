package installer

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/hostdb"
	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/internal/failpoint"
)

// Failpoint of Recover, after the boot record was written and before
// state.db was.
const FailpointRecoverRecord = "installer/recover/after-record"

// SlotStatus is one slot as `ringfence status` shows it.
type SlotStatus struct {
	Slot      string `json:"slot"`
	State     string `json:"state"`
	Channel   uint32 `json:"channel"`
	Version   uint32 `json:"version"`
	Tries     uint8  `json:"tries_left"`
	LoadTries uint8  `json:"load_tries_left"`
	Crumb     string `json:"breadcrumb"`
	Reason    string `json:"reason,omitempty"`
	Digest    string `json:"manifest_sha256,omitempty"`
	// Verified is true when the slot's files match the manifest the record
	// pins; VerifyError says why not.
	Verified    bool   `json:"verified"`
	VerifyError string `json:"verify_error,omitempty"`
}

// NextLoad is what the loader would do at the next boot.
type NextLoad struct {
	Action  string `json:"action"`
	Slot    string `json:"slot"`
	Channel uint32 `json:"channel,omitempty"`
	Version uint32 `json:"version,omitempty"`
	Why     string `json:"why"`
}

// Status is the whole picture of a root, for `ringfence status`.
type Status struct {
	Root        string              `json:"root"`
	Channel     uint32              `json:"channel"`
	Dir         string              `json:"dir"` // the channel's directory: its boot record and slots
	RecordValid bool                `json:"record_valid"`
	RecordError string              `json:"record_error,omitempty"`
	Seq         uint64              `json:"seq"`
	Active      string              `json:"active"`
	Fallback    string              `json:"fallback"`
	LastGood    string              `json:"last_known_good"`
	Next        NextLoad            `json:"next_boot"`
	Slots       []SlotStatus        `json:"slots"`
	History     []hostdb.Transition `json:"history"`
	Quarantined []hostdb.Quarantine `json:"quarantined"`
	Warnings    []string            `json:"warnings,omitempty"`
}

// StatusHistory is how many transitions Status shows.
const StatusHistory = 10

// Status reads the channel's boot record, verifies both slots, and collects
// the channel's history and quarantine from state.db (when it can). It
// changes nothing.
func (in *Installer) Status() Status {
	st := Status{Root: in.root, Channel: in.Ch(), Dir: in.channelDir(in.Ch()), Warnings: append([]string{}, *in.warnings...), History: []hostdb.Transition{}, Quarantined: []hostdb.Quarantine{}}
	rec, err := bootguard.Read(in.RecordPath())
	st.RecordValid = err == nil
	if err != nil {
		st.RecordError = err.Error()
	}
	st.Seq, st.Active, st.Fallback = rec.Seq, rec.Active.String(), rec.Fallback.String()
	st.LastGood = lastGood(rec).String()
	st.Next = nextLoad(bootguard.Decide(rec, err == nil))
	for _, s := range []bootguard.Slot{bootguard.SlotA, bootguard.SlotB} {
		st.Slots = append(st.Slots, in.slotStatus(rec, s))
	}
	// state.db is the root's: the channel's own entries.
	if h, err := in.History(StatusHistory * 8); err != nil {
		st.Warnings = append(st.Warnings, fmt.Sprintf("history unreadable: %v", err))
	} else {
		for _, t := range h {
			if t.Channel == st.Channel && len(st.History) < StatusHistory {
				st.History = append(st.History, t)
			}
		}
	}
	if q, err := in.Quarantined(); err != nil {
		st.Warnings = append(st.Warnings, fmt.Sprintf("quarantine list unreadable: %v", err))
	} else {
		for _, x := range q {
			if x.Channel == st.Channel {
				st.Quarantined = append(st.Quarantined, x)
			}
		}
	}
	return st
}

func (in *Installer) slotStatus(rec bootguard.Record, s bootguard.Slot) SlotStatus {
	e := rec.Entry(s)
	ss := SlotStatus{Slot: s.String(), State: e.State.String(), Channel: e.Channel, Version: e.Version,
		Tries: e.Tries, LoadTries: e.LoadTries, Crumb: e.Crumb.String()}
	if e.Reason != bootguard.ReasonNone {
		ss.Reason = e.Reason.String()
	}
	if e.State == bootguard.StateEmpty {
		return ss
	}
	ss.Digest = hex.EncodeToString(e.Digest[:])
	if _, err := VerifySlot(in.SlotDir(s), e.Digest); err != nil {
		ss.VerifyError = err.Error()
	} else {
		ss.Verified = true
	}
	return ss
}

func nextLoad(d bootguard.Decision) NextLoad {
	n := NextLoad{Action: d.Action.String(), Slot: d.Slot.String(), Why: string(d.Why)}
	if d.Action == bootguard.ActionLoad {
		n.Channel, n.Version = d.Entry.Channel, d.Entry.Version
	}
	return n
}

// lastGood is the slot that loads if the active content is reverted: the
// active slot if it is GOOD, else the fallback or the other slot if GOOD.
func lastGood(rec bootguard.Record) bootguard.Slot {
	if rec.Active != bootguard.SlotNone && rec.Entry(rec.Active).State == bootguard.StateGood {
		return rec.Active
	}
	for _, s := range []bootguard.Slot{rec.Fallback, rec.Active.Other(), bootguard.SlotA, bootguard.SlotB} {
		if s != bootguard.SlotNone && s != rec.Active && rec.Entry(s).State == bootguard.StateGood {
			return s
		}
	}
	return bootguard.SlotNone
}

// Recovery targets.
const (
	TargetLastGood = "lkg"
	TargetNone     = "none"
)

// RecoverReport says what Recover found, decided and did.
type RecoverReport struct {
	Target string `json:"target"`
	// Before is what the next boot would have done.
	Before NextLoad `json:"before"`
	// After is what the next boot does after the recovery (or would, on a
	// dry run).
	After NextLoad `json:"after"`
	// Plan says in words what changes.
	Plan []string `json:"plan"`
	// Rebuilt is true when the boot record had no valid copy and was
	// rebuilt from the slot manifests that verify.
	Rebuilt bool `json:"rebuilt"`
	// Changed is true when the record was written.
	Changed  bool     `json:"changed"`
	DryRun   bool     `json:"dry_run"`
	ReadOnly bool     `json:"read_only"`
	Warnings []string `json:"warnings"`
}

// Recover is offline recovery. target is TargetLastGood, TargetNone or a
// content version number. It works without state.db, and with a boot record
// that has no valid copy (then it rebuilds one from the slots whose
// manifests verify). With dryRun, or on a read-only root, it reports what it
// would do and changes nothing.
func (in *Installer) Recover(target string, dryRun bool) (RecoverReport, error) {
	rep := RecoverReport{Target: target, DryRun: dryRun, ReadOnly: in.readOnly && !dryRun}
	defer func() { rep.Warnings = append([]string{}, *in.warnings...) }()
	write := !dryRun && !in.readOnly
	if in.Ch() == 0 {
		return rep, ErrNoChannel
	}
	rec, err := bootguard.Read(in.RecordPath())
	rep.Before = nextLoad(bootguard.Decide(rec, err == nil))
	var version uint32
	if target != TargetLastGood && target != TargetNone {
		v, perr := strconv.ParseUint(target, 10, 32)
		if perr != nil {
			return rep, fmt.Errorf("%w: %q: use lkg, none or a content version number", ErrNoTarget, target)
		}
		version = uint32(v)
	}
	if err != nil {
		return in.rebuild(rep, target, version, write)
	}
	to, err := in.recoverTarget(rec, target, version)
	if err != nil {
		return rep, err
	}
	old := rec.Active
	next := rec
	if old == to && rec.Fallback == bootguard.SlotNone {
		rep.Plan = append(rep.Plan, fmt.Sprintf("nothing to change: %s", describe(rec, to)))
		rep.After = rep.Before
		return rep, nil
	}
	var reverted *bootguard.Entry
	if old != bootguard.SlotNone && old != to {
		if s := rec.Entry(old).State; s == bootguard.StateTrial || s == bootguard.StateGood {
			e := *rec.Entry(old)
			reverted = &e
			rep.Plan = append(rep.Plan, fmt.Sprintf("slot %v (channel %d version %d, %v) becomes BAD (recovered) and is quarantined", old, e.Channel, e.Version, e.State))
			ne := next.Entry(old)
			ne.State, ne.Reason, ne.Crumb, ne.Tries, ne.LoadTries = bootguard.StateBad, bootguard.ReasonRecovered, bootguard.CrumbNone, 0, 0
		}
	}
	next.Active, next.Fallback = to, bootguard.SlotNone
	if to == bootguard.SlotNone {
		rep.Plan = append(rep.Plan, "no slot becomes active: the next boot loads no content")
	} else {
		rep.Plan = append(rep.Plan, fmt.Sprintf("slot %v becomes active: %s", to, describe(rec, to)))
	}
	rep.After = nextLoad(bootguard.Decide(next, true))
	if !write {
		return rep, nil
	}
	if _, err := bootguard.Recover(in.RecordPath(), to); err != nil {
		return rep, err
	}
	rep.Changed = true
	failpoint.Hit(FailpointRecoverRecord)
	if reverted != nil {
		in.quarantine(old, *reverted, reverted.State, "recovered offline")
	}
	return rep, nil
}

// recoverTarget picks the slot to make active on a valid record; it must be
// GOOD and verify.
func (in *Installer) recoverTarget(rec bootguard.Record, target string, version uint32) (bootguard.Slot, error) {
	switch target {
	case TargetNone:
		return bootguard.SlotNone, nil
	case TargetLastGood:
		s := lastGood(rec)
		if s == bootguard.SlotNone {
			return s, fmt.Errorf("%w: no slot holds GOOD content; use --to none to load nothing", ErrNoTarget)
		}
		if _, err := VerifySlot(in.SlotDir(s), rec.Entry(s).Digest); err != nil {
			return s, fmt.Errorf("%w: last-known-good slot %v does not verify (%v); use --to none, or --to the other slot's version", ErrNoTarget, s, err)
		}
		return s, nil
	}
	for _, s := range []bootguard.Slot{bootguard.SlotA, bootguard.SlotB} {
		e := rec.Entry(s)
		if e.Version != version || e.State == bootguard.StateEmpty {
			continue
		}
		if e.State != bootguard.StateGood {
			return s, fmt.Errorf("%w: version %d in slot %v is %v; only GOOD content can be recovered to", ErrNoTarget, version, s, e.State)
		}
		if _, err := VerifySlot(in.SlotDir(s), e.Digest); err != nil {
			return s, fmt.Errorf("%w: version %d in slot %v does not verify: %v", ErrNoTarget, version, s, err)
		}
		return s, nil
	}
	return bootguard.SlotNone, fmt.Errorf("%w: version %d is in neither slot ('ringfence status' shows what each holds)", ErrNoTarget, version)
}

func describe(rec bootguard.Record, s bootguard.Slot) string {
	if s == bootguard.SlotNone {
		return "no content"
	}
	e := rec.Entry(s)
	return fmt.Sprintf("slot %v, channel %d version %d, %v", s, e.Channel, e.Version, e.State)
}

// candidate is a slot whose manifest verifies, found while rebuilding.
type candidate struct {
	slot    bootguard.Slot
	channel uint32
	version uint32
	digest  [32]byte
}

// rebuild writes a fresh boot record from the slots whose manifests verify.
// The target slot becomes GOOD and active; other verified slots become STAGED
// (never loaded by themselves), or BAD when quarantined. For lkg it takes the
// newest version state.db's history saw marked GOOD, or, without history,
// the older of the two (the newer is the likelier cause of the trouble).
func (in *Installer) rebuild(rep RecoverReport, target string, version uint32, write bool) (RecoverReport, error) {
	rep.Plan = append(rep.Plan, "the boot record has no valid copy: rebuilding it from the slot manifests that verify")
	var cands []candidate
	for _, s := range []bootguard.Slot{bootguard.SlotA, bootguard.SlotB} {
		dir := in.SlotDir(s)
		raw, err := boundedio.ReadFile(filepath.Join(dir, ManifestName), MaxManifestSize)
		if err != nil {
			rep.Plan = append(rep.Plan, fmt.Sprintf("slot %v: no manifest (%v)", s, errors.Unwrap(err)))
			continue
		}
		digest := sha256.Sum256(raw)
		m, err := VerifySlot(dir, digest)
		if err != nil {
			rep.Plan = append(rep.Plan, fmt.Sprintf("slot %v: does not verify: %v", s, err))
			continue
		}
		rep.Plan = append(rep.Plan, fmt.Sprintf("slot %v: channel %d version %d verifies", s, m.Channel, m.ContentVersion))
		cands = append(cands, candidate{s, m.Channel, m.ContentVersion, digest})
	}
	pick := -1
	switch target {
	case TargetNone:
	case TargetLastGood:
		pick = in.pickLastGood(cands)
		if pick < 0 && len(cands) > 0 {
			return rep, fmt.Errorf("%w: no verified slot to rebuild on; use --to none", ErrNoTarget)
		}
	default:
		for i, c := range cands {
			if c.version == version {
				pick = i
			}
		}
		if pick < 0 {
			return rep, fmt.Errorf("%w: version %d is in no slot that verifies (the plan above lists the slots)", ErrNoTarget, version)
		}
	}
	var rec bootguard.Record
	for i, c := range cands {
		e := rec.Entry(c.slot)
		*e = bootguard.Entry{Channel: c.channel, Version: c.version, Digest: c.digest, State: bootguard.StateStaged}
		switch {
		case i == pick:
			e.State = bootguard.StateGood
			rec.Active = c.slot
			rep.Plan = append(rep.Plan, fmt.Sprintf("slot %v becomes active and GOOD", c.slot))
		case in.isQuarantined(c.channel, c.version):
			e.State, e.Reason = bootguard.StateBad, bootguard.ReasonRecovered
			rep.Plan = append(rep.Plan, fmt.Sprintf("slot %v is quarantined: BAD", c.slot))
		default:
			rep.Plan = append(rep.Plan, fmt.Sprintf("slot %v becomes STAGED (never loaded unless activated again)", c.slot))
		}
	}
	if rec.Active == bootguard.SlotNone {
		rep.Plan = append(rep.Plan, "no slot becomes active: the next boot loads no content")
	}
	rep.Rebuilt = true
	rep.After = nextLoad(bootguard.Decide(rec, true))
	if !write {
		return rep, nil
	}
	if err := bootguard.Rebuild(in.RecordPath(), rec); err != nil {
		return rep, err
	}
	rep.Changed = true
	failpoint.Hit(FailpointRecoverRecord)
	return rep, nil
}

// pickLastGood chooses among verified candidates: the newest version marked
// GOOD in the history and not quarantined, else the oldest version.
func (in *Installer) pickLastGood(cands []candidate) int {
	if len(cands) == 0 {
		return -1
	}
	best := -1
	if h, err := in.History(0); err == nil {
		for i, c := range cands {
			if in.isQuarantined(c.channel, c.version) {
				continue
			}
			for _, t := range h {
				if t.To == bootguard.StateGood.String() && t.Channel == c.channel && t.Version == c.version &&
					(best < 0 || c.version > cands[best].version) {
					best = i
				}
			}
		}
	}
	if best >= 0 {
		return best
	}
	for i, c := range cands {
		if in.isQuarantined(c.channel, c.version) {
			continue
		}
		if best < 0 || c.version < cands[best].version {
			best = i
		}
	}
	return best
}

func (in *Installer) isQuarantined(ch, ver uint32) bool {
	if in.db == nil {
		return false
	}
	q, err := in.db.IsQuarantined(ch, ver)
	return err == nil && q
}

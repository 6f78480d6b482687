package installer

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/failpoint"
	"github.com/ringfence/ringfence/validator"
)

// Failpoints of Stage, in order (bootguard's and atomicfile's own are passed
// through as well).
const (
	FailpointStageClaimed   = "installer/stage/after-claim"
	FailpointStageCleared   = "installer/stage/after-clear"
	FailpointStageContent   = "installer/stage/after-content"
	FailpointStageManifest  = "installer/stage/after-manifest"
	FailpointStageFinished  = "installer/stage/after-finish"
	FailpointActivateRecord = "installer/activate/after-record"
)

// StageOptions adjust one Stage.
type StageOptions struct {
	// Unquarantine is the explicit admin action that lets a quarantined
	// version be staged again; it removes the quarantine entry.
	Unquarantine bool
}

// Staged describes content written into a slot and verified.
type Staged struct {
	Slot    bootguard.Slot
	Channel uint32
	Version uint32
	// Digest is the SHA-256 of the slot manifest, as the boot record holds it.
	Digest [32]byte
	// Problems are the validator's warnings (errors reject the content).
	Problems validator.Problems
}

// Stage validates content against the installed interpreter's capabilities
// and the active version, and writes it into the inactive slot: the slot is
// claimed in the boot record first (EMPTY, so a crash leaves nothing
// loadable), then the channel file and the manifest are written durably, the
// slot is verified against the manifest, and the record marks it STAGED.
// It never touches the active slot or a trial's fallback, and refuses
// quarantined versions.
func (in *Installer) Stage(content []byte, opts StageOptions) (Staged, error) {
	if in.readOnly {
		return Staged{}, ErrReadOnly
	}
	rec, err := bootguard.Read(in.RecordPath())
	if err != nil {
		return Staged{}, fmt.Errorf("%w; run 'ringfence recover' first", err)
	}
	vopts := validator.Options{}
	if rec.Active != bootguard.SlotNone {
		e := rec.Entry(rec.Active)
		vopts.Installed = &validator.Installed{Channel: e.Channel, ContentVersion: e.Version}
	}
	f, problems := validator.Validate(content, in.caps, vopts)
	if problems.HasErrors() {
		return Staged{}, fmt.Errorf("%w: %w", ErrInvalid, problems.Err())
	}
	ch, ver := f.Channel, f.ContentVersion
	if err := in.checkQuarantine(rec, ch, ver, opts.Unquarantine); err != nil {
		return Staged{}, err
	}
	if rec.Active != bootguard.SlotNone {
		if e := rec.Entry(rec.Active); e.Channel == ch && e.Version == ver && (e.State == bootguard.StateGood || e.State == bootguard.StateTrial) {
			return Staged{}, fmt.Errorf("%w: channel %d version %d in slot %v", ErrAlreadyInstalled, ch, ver, rec.Active)
		}
	}
	slot := rec.Active.Other()
	if slot == bootguard.SlotNone {
		slot = bootguard.SlotA
	}
	before := *rec.Entry(slot)
	if _, err := bootguard.BeginStage(in.RecordPath(), slot); err != nil {
		return Staged{}, err
	}
	failpoint.Hit(FailpointStageClaimed)
	dir := in.SlotDir(slot)
	if err := clearDir(dir); err != nil {
		return Staged{}, err
	}
	failpoint.Hit(FailpointStageCleared)
	if err := atomicfile.WriteFile(filepath.Join(dir, ContentName), content, 0o600); err != nil {
		return Staged{}, fmt.Errorf("installer: stage into slot %v: %w", slot, err)
	}
	failpoint.Hit(FailpointStageContent)
	m := Manifest{Channel: ch, ContentVersion: ver, Files: []ManifestFile{fileEntry(ContentName, content)}}
	raw, digest, err := m.encode()
	if err != nil {
		return Staged{}, err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, ManifestName), raw, 0o600); err != nil {
		return Staged{}, fmt.Errorf("installer: stage into slot %v: %w", slot, err)
	}
	failpoint.Hit(FailpointStageManifest)
	if _, err := VerifySlot(dir, digest); err != nil {
		return Staged{}, err
	}
	if _, err := bootguard.FinishStage(in.RecordPath(), slot, ch, ver, digest); err != nil {
		return Staged{}, err
	}
	failpoint.Hit(FailpointStageFinished)
	if opts.Unquarantine && in.db != nil {
		if err := in.db.Unquarantine(ch, ver); err != nil {
			in.warn("remove %d:%d from the quarantine list: %v", ch, ver, err)
		}
	}
	in.history(slot, bootguard.Entry{Channel: ch, Version: ver}, before.State, bootguard.StateStaged, "staged")
	return Staged{Slot: slot, Channel: ch, Version: ver, Digest: digest, Problems: problems}, nil
}

// checkQuarantine refuses a version that was reverted here: listed in
// state.db, or BAD in the boot record (which holds it even when state.db is
// lost).
func (in *Installer) checkQuarantine(rec bootguard.Record, ch, ver uint32, unquarantine bool) error {
	if unquarantine {
		return nil
	}
	for _, s := range []bootguard.Slot{bootguard.SlotA, bootguard.SlotB} {
		if e := rec.Entry(s); e.State == bootguard.StateBad && e.Channel == ch && e.Version == ver {
			return fmt.Errorf("%w: channel %d version %d was reverted (%v, boot record slot %v); install a newer version, or pass --unquarantine to override", ErrQuarantined, ch, ver, e.Reason, s)
		}
	}
	if in.db == nil {
		return nil
	}
	q, err := in.db.IsQuarantined(ch, ver)
	if err != nil {
		in.warn("quarantine list unreadable: %v", err)
		return nil
	}
	if q {
		return fmt.Errorf("%w: channel %d version %d is in state.db's quarantine list; install a newer version, or pass --unquarantine to override", ErrQuarantined, ch, ver)
	}
	return nil
}

// clearDir removes every file in a slot directory (slots hold no
// subdirectories), and syncs the directory so no old file reappears.
func clearDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("installer: clear %s: %w", dir, err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("installer: clear %s: %w", dir, err)
		}
	}
	if len(ents) == 0 {
		return nil
	}
	return atomicfile.SyncDir(dir)
}

// Activate puts a staged slot on trial: the boot record makes it active
// (TRIAL, with the policy's tries) and the current last-known-good its
// fallback. The next boot's loader loads it.
func (in *Installer) Activate(slot bootguard.Slot) (bootguard.Record, error) {
	if in.readOnly {
		return bootguard.Record{}, ErrReadOnly
	}
	rec, err := bootguard.Read(in.RecordPath())
	if err != nil {
		return bootguard.Record{}, err
	}
	if slot == bootguard.SlotA || slot == bootguard.SlotB {
		e := rec.Entry(slot)
		if e.State == bootguard.StateStaged {
			if _, err := VerifySlot(in.SlotDir(slot), e.Digest); err != nil {
				return bootguard.Record{}, fmt.Errorf("installer: will not activate slot %v: %w", slot, err)
			}
		}
	}
	next, err := bootguard.Activate(in.RecordPath(), slot, in.pol)
	if err != nil {
		return bootguard.Record{}, err
	}
	failpoint.Hit(FailpointActivateRecord)
	in.history(slot, *next.Entry(slot), bootguard.StateStaged, bootguard.StateTrial, fmt.Sprintf("activated as trial (tries %d, load tries %d), fallback %v", in.pol.Tries, in.pol.LoadTries, next.Fallback))
	return next, nil
}

// Install stages content and activates it: the offline path of `ringfence
// install`, and the daemon's.
func (in *Installer) Install(content []byte, opts StageOptions) (Staged, bootguard.Record, error) {
	st, err := in.Stage(content, opts)
	if err != nil {
		return Staged{}, bootguard.Record{}, err
	}
	rec, err := in.Activate(st.Slot)
	if err != nil {
		return st, bootguard.Record{}, err
	}
	return st, rec, nil
}

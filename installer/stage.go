package installer

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/hostdb"
	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/failpoint"
	"github.com/ringfence/ringfence/validator"
)

// Failpoints of Stage, in order (bootguard's and atomicfile's own are passed
// through as well).
const (
	FailpointStageClaimed   = "installer/stage/after-claim"
	FailpointStageCleared   = "installer/stage/after-clean"
	FailpointStageContent   = "installer/stage/after-content" // the content and its manifest
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

// Content is a channel file that passed Validate against this installer's
// capabilities and the version active when it was checked. Only Check makes
// one, so Stage cannot be handed content nobody validated, and content is
// validated once on its way in (Check, then the caller's preflight, then
// Stage), not once per step.
type Content struct {
	data     []byte
	sum      [32]byte // SHA-256 of data, for the slot manifest
	channel  uint32
	version  uint32
	problems validator.Problems
}

// Channel and Version identify the content; Problems are the validator's
// warnings.
func (c Content) Channel() uint32              { return c.channel }
func (c Content) Version() uint32              { return c.version }
func (c Content) Problems() validator.Problems { return c.problems }

// Check validates data against the installed interpreter's capabilities and
// the active content of its channel (a file of the channel must be newer).
// Rejected content is ErrInvalid, wrapping the validator's problems.
func (in *Installer) Check(data []byte) (Content, error) {
	// The content's SHA-256, which its slot manifest will list, is taken
	// on the other core while the content is validated: once, on its way
	// in, like the validation.
	sum := make(chan [32]byte, 1)
	go func() { sum <- sha256.Sum256(data) }()
	c, err := in.check(data)
	c.sum = <-sum
	return c, err
}

func (in *Installer) check(data []byte) (Content, error) {
	f, err := validator.Parse(data)
	if err != nil {
		_, problems := validator.Validate(data, in.caps, validator.Options{})
		return Content{}, fmt.Errorf("%w: %w", ErrInvalid, problems.Err())
	}
	vopts := validator.Options{}
	if rec, err := bootguard.Read(in.recordPath(f.Channel)); err == nil && rec.Active != bootguard.SlotNone {
		e := rec.Entry(rec.Active)
		vopts.Installed = &validator.Installed{Channel: e.Channel, ContentVersion: e.Version}
	}
	problems := validator.Check(f, in.caps, vopts)
	if problems.HasErrors() {
		return Content{}, fmt.Errorf("%w: %w", ErrInvalid, problems.Err())
	}
	return Content{data: data, channel: f.Channel, version: f.ContentVersion, problems: problems}, nil
}

// Stage writes checked content into the inactive slot: the slot is claimed
// in the boot record first (EMPTY, so a crash leaves nothing loadable), the
// channel file and the manifest are written durably (the file's SHA-256 is
// computed while it is written), the slot is verified against the manifest, and
// the record marks it STAGED. It never touches the active slot or a trial's
// fallback, and refuses quarantined versions. The content's channel gets
// its directory if it has none yet.
func (in *Installer) Stage(c Content, opts StageOptions) (Staged, error) {
	in, err := in.forContent(c)
	if err != nil {
		return Staged{}, err
	}
	st, t, err := in.stage(c, opts, nil)
	if err == nil {
		in.history(t)
	}
	return st, err
}

// StageActivate stages checked content (see Stage) and puts it on trial
// (see Activate) with one record write for both: the daemon's path and
// Install's. When another channel of the root is in its trial, the content
// is staged and waits: the error is ErrTrialRunning, and Staged says where.
func (in *Installer) StageActivate(c Content, opts StageOptions) (Staged, bootguard.Record, error) {
	in, err := in.forContent(c)
	if err != nil {
		return Staged{}, bootguard.Record{}, err
	}
	if err := in.changeable(); err != nil {
		return Staged{}, bootguard.Record{}, err
	}
	var rec bootguard.Record
	var activated []hostdb.Transition
	st, t, err := in.stage(c, opts, func(slot bootguard.Slot, digest [32]byte) error {
		if other := in.TrialRunning(); other != 0 {
			_, err := bootguard.FinishStage(in.RecordPath(), slot, c.channel, c.version, digest)
			return err
		}
		next, err := bootguard.FinishStageActivate(in.RecordPath(), slot, c.channel, c.version, digest, in.pol)
		if err != nil {
			return err
		}
		rec = next
		failpoint.Hit(FailpointActivateRecord)
		activated = append(activated, in.activated(slot, next))
		return nil
	})
	if err != nil {
		return st, bootguard.Record{}, err
	}
	in.history(append([]hostdb.Transition{t}, activated...)...)
	if activated == nil {
		return st, bootguard.Record{}, in.trialRunningErr()
	}
	return st, rec, nil
}

// stage is Stage without the history write, which it returns for the caller
// to record (StageActivate records staging and activation in one commit).
// finish writes the record once the slot's files are verified; nil is
// FinishStage.
func (in *Installer) stage(c Content, opts StageOptions, finish func(slot bootguard.Slot, digest [32]byte) error) (Staged, hostdb.Transition, error) {
	if in.readOnly {
		return Staged{}, hostdb.Transition{}, ErrReadOnly
	}
	if c.data == nil {
		return Staged{}, hostdb.Transition{}, errors.New("installer: Stage needs content from Check")
	}
	rec, err := bootguard.Read(in.RecordPath())
	if err != nil {
		return Staged{}, hostdb.Transition{}, fmt.Errorf("%w; run 'ringfence recover' first", err)
	}
	ch, ver := c.channel, c.version
	if err := in.checkQuarantine(rec, ch, ver, opts.Unquarantine); err != nil {
		return Staged{}, hostdb.Transition{}, err
	}
	if rec.Active != bootguard.SlotNone {
		e := rec.Entry(rec.Active)
		if e.Channel == ch && e.Version == ver && (e.State == bootguard.StateGood || e.State == bootguard.StateTrial) {
			return Staged{}, hostdb.Transition{}, fmt.Errorf("%w: channel %d version %d in slot %v", ErrAlreadyInstalled, ch, ver, rec.Active)
		}
		if e.Channel == ch && ver < e.Version {
			// The active content changed since Check.
			return Staged{}, hostdb.Transition{}, fmt.Errorf("%w: version %d is older than the active version %d", ErrInvalid, ver, e.Version)
		}
	}
	slot := rec.Active.Other()
	if slot == bootguard.SlotNone {
		slot = bootguard.SlotA
	}
	before := *rec.Entry(slot)
	// The slot is claimed in the record while its new files are written
	// and synced under temporary names: the claim must be durable before
	// any of the slot's files changes (the renames), not before the
	// temporary files are written, so the two syncs overlap.
	claimed := make(chan error, 1)
	go func() {
		_, err := bootguard.BeginStage(in.RecordPath(), slot)
		claimed <- err
	}()
	dir := in.SlotDir(slot)
	files := atomicfile.Prepare(dir)
	err = files.Add(ContentName, c.data, 0o600)
	var digest [32]byte
	m := Manifest{Channel: ch, ContentVersion: ver, Files: []ManifestFile{{Name: ContentName, Size: int64(len(c.data)), SHA256: hex.EncodeToString(c.sum[:])}}}
	if err == nil {
		var raw []byte
		if raw, digest, err = m.encode(); err == nil {
			err = files.Add(ManifestName, raw, 0o600)
		}
	}
	if cerr := <-claimed; cerr != nil {
		files.Discard()
		return Staged{}, hostdb.Transition{}, cerr
	}
	failpoint.Hit(FailpointStageClaimed)
	if err != nil {
		files.Discard()
		return Staged{}, hostdb.Transition{}, fmt.Errorf("installer: stage into slot %v: %w", slot, err)
	}
	// The content and its manifest are renamed into the claimed slot, then
	// synced with the directory, all at once: nothing reads the slot until
	// the record names its manifest's digest, after this returned.
	if err := files.Commit(); err != nil {
		files.Discard()
		return Staged{}, hostdb.Transition{}, fmt.Errorf("installer: stage into slot %v: %w", slot, err)
	}
	failpoint.Hit(FailpointStageContent)
	if err := removeUnlisted(dir, m); err != nil {
		return Staged{}, hostdb.Transition{}, err
	}
	failpoint.Hit(FailpointStageCleared)
	// The files are not read back here: the manifest's hash is of the
	// bytes written, and the loader verifies the slot against the record's
	// digest before every load, which is the check that counts (a slot
	// that fails it is reverted as corrupt before anything loads it).
	if finish == nil {
		finish = func(slot bootguard.Slot, digest [32]byte) error {
			_, err := bootguard.FinishStage(in.RecordPath(), slot, ch, ver, digest)
			return err
		}
	}
	if err := finish(slot, digest); err != nil {
		return Staged{}, hostdb.Transition{}, err
	}
	failpoint.Hit(FailpointStageFinished)
	if opts.Unquarantine && in.db != nil {
		if err := in.db.Unquarantine(ch, ver); err != nil {
			in.warn("remove %d:%d from the quarantine list: %v", ch, ver, err)
		}
	}
	t := transition(slot, bootguard.Entry{Channel: ch, Version: ver}, before.State, bootguard.StateStaged, "staged")
	return Staged{Slot: slot, Channel: ch, Version: ver, Digest: digest, Problems: c.problems}, t, nil
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

// removeUnlisted removes the files of a slot directory that its new
// manifest does not list (what an older layout left), syncing the directory
// only when it removed something.
func removeUnlisted(dir string, m Manifest) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("installer: clean %s: %w", dir, err)
	}
	removed := false
	for _, e := range ents {
		if e.Name() == ManifestName || slices.ContainsFunc(m.Files, func(f ManifestFile) bool { return f.Name == e.Name() }) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("installer: clean %s: %w", dir, err)
		}
		removed = true
	}
	if !removed {
		return nil
	}
	return atomicfile.SyncDir(dir)
}

// forContent returns the Installer of c's channel.
func (in *Installer) forContent(c Content) (*Installer, error) {
	if c.data == nil {
		return nil, errors.New("installer: Stage needs content from Check")
	}
	if in.channel == c.channel {
		return in, nil
	}
	return in.Channel(c.channel)
}

// TrialRunning returns the channel, other than the Installer's own, whose
// active content is in its trial, or 0. A host runs one trial at a time
// (docs/boot-record.md, "Several channels"): a crash after two trials loaded
// could not be pinned on either.
func (in *Installer) TrialRunning() uint32 {
	own := in.Ch()
	for _, ch := range in.Channels() {
		if ch == own {
			continue
		}
		rec, err := bootguard.Read(in.recordPath(ch))
		if err != nil || rec.Active == bootguard.SlotNone {
			continue
		}
		if rec.Entry(rec.Active).State == bootguard.StateTrial {
			return ch
		}
	}
	return 0
}

// Activate puts a staged slot on trial: the boot record makes it active
// (TRIAL, with the policy's tries) and the current last-known-good its
// fallback. The next boot's loader loads it. It refuses while another
// channel of the root is in its trial (ErrTrialRunning).
func (in *Installer) Activate(slot bootguard.Slot) (bootguard.Record, error) {
	if err := in.changeable(); err != nil {
		return bootguard.Record{}, err
	}
	if err := in.trialRunningErr(); err != nil {
		return bootguard.Record{}, err
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
	in.history(in.activated(slot, next))
	return next, nil
}

// activated is the history entry of slot's activation into next.
func (in *Installer) activated(slot bootguard.Slot, next bootguard.Record) hostdb.Transition {
	return transition(slot, *next.Entry(slot), bootguard.StateStaged, bootguard.StateTrial,
		fmt.Sprintf("activated as trial (tries %d, load tries %d), fallback %v", in.pol.Tries, in.pol.LoadTries, next.Fallback))
}

// trialRunningErr is ErrTrialRunning, saying which channel, while another
// channel of the root is in its trial.
func (in *Installer) trialRunningErr() error {
	if other := in.TrialRunning(); other != 0 {
		return fmt.Errorf("%w (%d); channel %d waits until that trial is marked good or reverted (one trial at a time per host)", ErrTrialRunning, other, in.Ch())
	}
	return nil
}

// Install checks, stages and activates content: the offline path of `ringfence
// install`. While another channel is in its trial the content is staged and
// the error is ErrTrialRunning.
func (in *Installer) Install(data []byte, opts StageOptions) (Staged, bootguard.Record, error) {
	c, err := in.Check(data)
	if err != nil {
		return Staged{}, bootguard.Record{}, err
	}
	return in.StageActivate(c, opts)
}

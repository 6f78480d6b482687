package installer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/hostdb"
	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/fileperm"
	"github.com/ringfence/ringfence/validator"
)

// Names under the root directory (docs/design.md, "Host disk layout"). Each
// channel the host follows has its own directory, channels/<N>, holding its
// boot record (RecordName) and its slots (SlotsDir); state.db, the identity
// and the TUF metadata are the root's, shared by every channel.
const (
	ChannelsDir = "channels"
	RecordName  = "bootrecord"
	SlotsDir    = "slots"
	StateName   = "state.db"
	// IdentityDir holds the host key (telemetry.KeyName), kept by the
	// daemon; the installer only checks its permissions.
	IdentityDir = "identity"
)

// Options configure Open.
type Options struct {
	// Capabilities of the installed interpreter, which staged content is
	// validated against. Required.
	Capabilities *validator.Capabilities
	// Policy is the trial's tries; zero means bootguard.DefaultPolicy.
	Policy bootguard.Policy
	// ReadOnly opens the root without changing anything: no directories
	// are created, nothing is cleaned up, and every change returns
	// ErrReadOnly. Open falls back to it by itself on a read-only disk.
	ReadOnly bool
	// Clock stamps history and quarantine entries (hostdb.Options.Clock);
	// nil means clock.System.
	Clock clock.Clock
	// Channels are the channels the root follows: Open makes their
	// directories and empty boot records. Channels found on disk are opened
	// too, and a channel gets its directory when content for it is first
	// installed.
	Channels []uint32
	// StrictPerms makes Open refuse a root that users other than its owner
	// can change: the root directory, the boot record or the identity
	// directory group- or world-writable (they could swap the content the
	// host loads, or its key). The daemon sets it. Without it (the offline
	// tools: status, recover) the same findings are warnings, so a host can
	// still be inspected and repaired.
	StrictPerms bool
}

// Installer manages the channels under one root directory: each channel's
// slots and boot record, and the root's state.db. Open returns the root's
// Installer; Channel returns the Installer of one channel, which shares the
// root's state.db. The methods that act on a boot record (Boot, MarkGood,
// Revert, Activate, Recover, Status, RecordPath, SlotDir) act on the
// Installer's channel: the one Channel gave, or for the root's Installer the
// root's only channel. Check, Stage and Install act on the channel of the
// content they are given. One process at a time should hold an Installer
// for a root (state.db is locked while open; each boot record is locked per
// update).
type Installer struct {
	root     string
	channel  uint32 // 0: the root's only channel, if it has one
	caps     *validator.Capabilities
	pol      bootguard.Policy
	clock    clock.Clock // nil: hostdb's default
	readOnly bool
	db       *hostdb.DB // nil when state.db cannot be used: see Warnings
	warnings *[]string  // shared by the root's Installer and its channels'
	view     bool       // a channel's Installer: Close leaves state.db open
	legacy   uint32     // the channel of a single-channel root not converted (read-only), or 0
}

// Open prepares root: it creates the directories and an empty boot record if
// they are missing, removes temporary files a crashed run left behind, opens
// state.db (moving a corrupt one aside; working without it if it cannot be
// opened at all), and records in state.db the slots the boot guard reverted
// while no installer ran (quarantine and history).
func Open(root string, opts Options) (*Installer, error) {
	in := &Installer{root: root, caps: opts.Capabilities, pol: opts.Policy, clock: opts.Clock, readOnly: opts.ReadOnly, warnings: new([]string)}
	if in.caps == nil {
		return nil, errors.New("installer: Options.Capabilities is required (the installed interpreter's capability manifest)")
	}
	if in.pol == (bootguard.Policy{}) {
		in.pol = bootguard.DefaultPolicy()
	}
	if err := in.pol.Check(); err != nil {
		return nil, err
	}
	if err := in.checkPerms(opts.StrictPerms); err != nil {
		return nil, err
	}
	for _, ch := range opts.Channels {
		if ch == 0 {
			return nil, errors.New("installer: channel 0 is not a channel")
		}
	}
	if !in.readOnly {
		if err := in.prepare(opts.Channels); err != nil {
			if !isReadOnlyFS(err) {
				return nil, err
			}
			in.readOnly = true
			in.warn("the disk under %s is read-only: showing what would happen, changing nothing", root)
		}
	}
	// A root of the single-channel layout that could not be converted (a
	// read-only disk, a rescue shell's look first) is read where it is.
	if legacy := filepath.Join(root, RecordName); fileExists(legacy) {
		if ch := legacyChannel(legacy); ch != 0 && !fileExists(RecordPathOf(root, ch)) {
			in.legacy = ch
			in.warn("%s is a root of the single-channel layout (channel %d's record and slots at the root); it is converted at the first writable open", root, ch)
		}
	}
	in.openState()
	if !in.readOnly {
		in.reconcile()
	}
	return in, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// checkPerms refuses (strict) or warns about a root directory, boot record
// or identity directory that is group- or world-writable. What is missing
// is not checked: prepare creates the boot record 0600, the daemon the
// identity directory 0700, and a missing root is prepare's error. When
// strict, a mode that cannot be read is refused too.
func (in *Installer) checkPerms(strict bool) error {
	checks := []struct{ path, what string }{
		{in.root, "root directory"},
		{filepath.Join(in.root, ChannelsDir), "channels directory"},
		{filepath.Join(in.root, IdentityDir), "identity directory"},
	}
	for _, ch := range in.Channels() {
		checks = append(checks, struct{ path, what string }{in.recordPath(ch), fmt.Sprintf("boot record of channel %d", ch)})
	}
	for _, c := range checks {
		err := fileperm.CheckPrivate(c.path, c.what)
		switch {
		case err == nil || errors.Is(err, fs.ErrNotExist):
		case strict:
			return fmt.Errorf("installer: %w", err)
		case errors.Is(err, fileperm.ErrTooOpen):
			in.warn("%v (ringfenced refuses to start until it is fixed)", err)
		}
	}
	return nil
}

// prepare creates the layout and cleans up after a crashed run: a root of
// the single-channel layout is converted first (migrateLegacy), then every
// channel's directory is prepared.
func (in *Installer) prepare(channels []uint32) error {
	if _, err := os.Stat(in.root); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("installer: root directory %s: %w; check the path, or create it for a new host (mkdir -m 700 %s)", in.root, fs.ErrNotExist, in.root)
	} else if err != nil {
		return fmt.Errorf("installer: root directory: %w", err)
	}
	if err := probeWritable(in.root); err != nil {
		return err
	}
	if err := atomicfile.Cleanup(in.root); err != nil {
		return fmt.Errorf("installer: clean up %s: %w", in.root, err)
	}
	if err := in.migrateLegacy(channels); err != nil {
		return err
	}
	for _, ch := range append(in.Channels(), channels...) {
		if err := in.prepareChannel(ch); err != nil {
			return err
		}
	}
	return nil
}

// prepareChannel creates channel ch's slots and an empty boot record if they
// are missing, and removes temporary files a crashed run left in them.
func (in *Installer) prepareChannel(ch uint32) error {
	for _, s := range []bootguard.Slot{bootguard.SlotA, bootguard.SlotB} {
		dir := in.slotDir(ch, s)
		if err := mkdirDurable(dir); err != nil {
			return err
		}
		if err := atomicfile.Cleanup(dir); err != nil {
			return fmt.Errorf("installer: clean up %s: %w", dir, err)
		}
	}
	if err := atomicfile.Cleanup(in.channelDir(ch)); err != nil {
		return fmt.Errorf("installer: clean up %s: %w", in.channelDir(ch), err)
	}
	if _, err := bootguard.Init(in.recordPath(ch)); err != nil && !errors.Is(err, bootguard.ErrNoValidCopy) {
		return err
	} else if err != nil {
		in.warn("channel %d: %v", ch, err)
	}
	return nil
}

// mkdirDurable creates dir and its missing parents, syncing each parent
// whose entries changed, so the new directories survive a power cut.
func mkdirDurable(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if err := mkdirDurable(parent); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("installer: %w", err)
	}
	if err := atomicfile.SyncDir(parent); err != nil {
		return fmt.Errorf("installer: sync %s: %w", parent, err)
	}
	return nil
}

// probeWritable fails with the file system's error when dir cannot be
// written (a read-only mount, say).
func probeWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".probe"+".tmp-*")
	if err != nil {
		return fmt.Errorf("installer: %s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// openState opens state.db; any failure leaves db nil with a warning,
// because the boot record alone decides what loads.
func (in *Installer) openState() {
	path := filepath.Join(in.root, StateName)
	opts := hostdb.Options{ReadOnly: in.readOnly, Clock: in.clock}
	if in.readOnly {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			in.warn("state.db is missing: no history or quarantine list (the boot record alone decides what loads)")
			return
		}
		db, err := hostdb.Open(path, opts)
		if err != nil {
			in.warn("state.db cannot be read (%v): no history or quarantine list (the boot record alone decides what loads)", err)
			return
		}
		in.db = db
		return
	}
	db, reset, err := hostdb.OpenOrReset(path, opts)
	if err != nil {
		in.warn("state.db cannot be opened (%v): history and quarantine are not recorded (the boot record alone decides what loads)", err)
		return
	}
	if reset {
		in.warn("state.db was corrupt and was moved aside; history, quarantine list and pins start empty")
	}
	in.db = db
}

// Close closes state.db (a channel's Installer leaves it to the root's).
func (in *Installer) Close() error {
	if in.db == nil || in.view {
		return nil
	}
	return in.db.Close()
}

// State returns state.db, or nil when it could not be opened (see
// Warnings). It is valid until Close; the daemon keeps its telemetry outbox
// there.
func (in *Installer) State() *hostdb.DB { return in.db }

// Root returns the root directory.
func (in *Installer) Root() string { return in.root }

// RecordPath returns the boot record's path of the Installer's channel.
func (in *Installer) RecordPath() string { return in.recordPath(in.Ch()) }

// SlotDir returns the directory of slot s of the Installer's channel.
func (in *Installer) SlotDir(s bootguard.Slot) string { return in.slotDir(in.Ch(), s) }

func (in *Installer) channelDir(ch uint32) string {
	if ch != 0 && ch == in.legacy {
		return in.root
	}
	return ChannelDir(in.root, ch)
}

func (in *Installer) recordPath(ch uint32) string {
	return filepath.Join(in.channelDir(ch), RecordName)
}

// ChannelDir is channel ch's directory under root: its boot record and its
// slots.
func ChannelDir(root string, ch uint32) string {
	return filepath.Join(root, ChannelsDir, strconv.FormatUint(uint64(ch), 10))
}

// RecordPathOf is the path of channel ch's boot record under root, for
// readers that do not open the root (the daemon's telemetry, a loader).
func RecordPathOf(root string, ch uint32) string {
	return filepath.Join(ChannelDir(root, ch), RecordName)
}

func (in *Installer) slotDir(ch uint32, s bootguard.Slot) string {
	return filepath.Join(in.channelDir(ch), SlotsDir, s.String())
}

// Ch returns the Installer's channel: the one Channel gave, else the root's
// only channel, else 0 (the root follows no channel yet, or several, and
// the caller must pick one with Channel).
func (in *Installer) Ch() uint32 {
	if in.channel != 0 {
		return in.channel
	}
	if chs := in.Channels(); len(chs) == 1 {
		return chs[0]
	}
	return 0
}

// Channels returns the channels the root holds, in ascending order (the
// order a loader loads them in).
func (in *Installer) Channels() []uint32 {
	ents, _ := os.ReadDir(filepath.Join(in.root, ChannelsDir)) // none yet: no channel but a legacy one
	var out []uint32
	for _, e := range ents {
		n, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil || n == 0 || !e.IsDir() || strconv.FormatUint(n, 10) != e.Name() {
			continue
		}
		out = append(out, uint32(n))
	}
	if in.legacy != 0 && !slices.Contains(out, in.legacy) {
		out = append(out, in.legacy)
	}
	slices.Sort(out)
	return out
}

// Channel returns the Installer of channel ch, sharing this root's state.db
// (close the root's Installer, not the channel's). On a writable root the
// channel's directory and empty boot record are made if missing.
func (in *Installer) Channel(ch uint32) (*Installer, error) {
	if ch == 0 {
		return nil, errors.New("installer: channel 0 is not a channel")
	}
	v := *in
	v.channel, v.view = ch, true
	if !in.readOnly {
		if _, err := os.Stat(in.recordPath(ch)); errors.Is(err, fs.ErrNotExist) {
			if err := in.prepareChannel(ch); err != nil {
				return nil, err
			}
		}
	}
	return &v, nil
}

// ReadOnly reports whether the installer changes nothing (a read-only disk,
// or Options.ReadOnly).
func (in *Installer) ReadOnly() bool { return in.readOnly }

// Warnings returns what went wrong that did not stop the installer (state.db
// lost, a read-only disk, ...), for the caller to show.
func (in *Installer) Warnings() []string { return *in.warnings }

func (in *Installer) warn(format string, args ...any) {
	*in.warnings = append(*in.warnings, fmt.Sprintf(format, args...))
}

// reconcile brings state.db up to date with reverts the boot guard made on
// its own (at boot, with no installer running): every BAD slot is
// quarantined. It is idempotent.
func (in *Installer) reconcile() {
	if in.db == nil {
		return
	}
	for _, ch := range in.Channels() {
		rec, err := bootguard.Read(in.recordPath(ch))
		if err != nil {
			continue
		}
		for _, s := range []bootguard.Slot{bootguard.SlotA, bootguard.SlotB} {
			e := rec.Entry(s)
			if e.State != bootguard.StateBad {
				continue
			}
			if q, err := in.db.IsQuarantined(e.Channel, e.Version); err == nil && !q {
				in.quarantine(s, *e, bootguard.StateTrial, e.Reason.String())
			}
		}
	}
}

// quarantine records that slot s's content was reverted, in the quarantine
// list and the history. Failures are warnings: the boot record already
// holds the revert.
func (in *Installer) quarantine(s bootguard.Slot, e bootguard.Entry, from bootguard.State, reason string) {
	if in.db == nil {
		return
	}
	if err := in.db.Quarantine(hostdb.Quarantine{Channel: e.Channel, Version: e.Version, Reason: reason}); err != nil {
		in.warn("quarantine %d:%d in state.db: %v", e.Channel, e.Version, err)
	}
	in.history(transition(s, e, from, bootguard.StateBad, reason))
}

// history appends transitions to state.db in one commit (a warning if it
// cannot).
func (in *Installer) history(ts ...hostdb.Transition) {
	if in.db == nil || len(ts) == 0 {
		return
	}
	if err := in.db.Record(ts...); err != nil {
		in.warn("record history in state.db: %v", err)
	}
}

// transition describes slot s's content moving from one state to another.
func transition(s bootguard.Slot, e bootguard.Entry, from, to bootguard.State, reason string) hostdb.Transition {
	return hostdb.Transition{Channel: e.Channel, Version: e.Version, Slot: s.String(), From: from.String(), To: to.String(), Reason: reason}
}

// History returns the newest transitions, newest first (nil without
// state.db).
func (in *Installer) History(limit int) ([]hostdb.Transition, error) {
	if in.db == nil {
		return nil, nil
	}
	return in.db.History(limit)
}

// Quarantined returns the quarantine list (nil without state.db).
func (in *Installer) Quarantined() ([]hostdb.Quarantine, error) {
	if in.db == nil {
		return nil, nil
	}
	return in.db.Quarantined()
}

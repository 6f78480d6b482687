package installer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/failpoint"
)

// FailpointMigrateSlots is hit after a single-channel root's slots moved
// into their channel's directory, before its boot record did.
const FailpointMigrateSlots = "installer/migrate/after-slots"

// migrateLegacy converts a root of the single-channel layout (<root>/bootrecord
// and <root>/slots, before issue 22) into the channels layout: the slots,
// then the boot record, are renamed into channels/<N>, each rename made
// durable. The channel is the one the record's entries name (they all hold
// the same channel); a record with no content takes the only configured
// channel, or is left where it is with a warning. The record moves last, so
// a crash in between is finished by the next Open: the record still says
// which channel, and the slots are found in either place. Nothing is
// copied, so nothing is lost: the slots, the record with its sequence, its
// trial and breadcrumb, and state.db (which stays) are the same files.
func (in *Installer) migrateLegacy(channels []uint32) error {
	legacy := filepath.Join(in.root, RecordName)
	if _, err := os.Stat(legacy); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	ch := legacyChannel(legacy)
	if ch == 0 && len(channels) == 1 {
		ch = channels[0]
	}
	if ch == 0 {
		in.warn("%s holds a boot record of the single-channel layout with no content in it and no channel to move it to: configure the channel, and it moves to %s/<channel> at the next start", legacy, ChannelsDir)
		return nil
	}
	if _, err := os.Stat(in.recordPath(ch)); err == nil {
		return fmt.Errorf("installer: %s (single-channel layout) and %s both exist: move one away by hand (ringfence status shows both)", legacy, in.recordPath(ch))
	}
	dir := in.channelDir(ch)
	if err := mkdirDurable(dir); err != nil {
		return err
	}
	oldSlots, newSlots := filepath.Join(in.root, SlotsDir), filepath.Join(dir, SlotsDir)
	if _, err := os.Stat(oldSlots); err == nil {
		if _, err := os.Stat(newSlots); err == nil {
			return fmt.Errorf("installer: %s and %s both exist: move one away by hand", oldSlots, newSlots)
		}
		if err := atomicfile.Rename(oldSlots, newSlots); err != nil {
			return fmt.Errorf("installer: move the slots into channel %d: %w", ch, err)
		}
	}
	failpoint.Hit(FailpointMigrateSlots)
	if err := atomicfile.Rename(legacy, in.recordPath(ch)); err != nil {
		return fmt.Errorf("installer: move the boot record into channel %d: %w", ch, err)
	}
	_ = os.Remove(legacy + ".lock") // bootguard's lock file, recreated beside the record
	in.warn("converted the single-channel root to the channels layout: channel %d's slots and boot record are now in %s", ch, dir)
	return nil
}

// legacyChannel returns the channel a single-channel boot record's entries
// name, or 0 when it holds no content (or no valid copy).
func legacyChannel(path string) uint32 {
	rec, err := bootguard.Read(path)
	if err != nil {
		return 0
	}
	for _, s := range []bootguard.Slot{rec.Active, rec.Fallback, bootguard.SlotA, bootguard.SlotB} {
		if s == bootguard.SlotNone {
			continue
		}
		if e := rec.Entry(s); e.State != bootguard.StateEmpty && e.Channel != 0 {
			return e.Channel
		}
	}
	return 0
}

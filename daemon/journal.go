package daemon

import (
	"bufio"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/wire"
)

// The journal is what the daemon did, machine-readable: every event it
// queues for the rollout server, as stored in the outbox (with its id and
// seq), one JSON line each (wire.Event), in <root>/daemon/events.jsonl.
// It is for people and tools on the host (ringfence-lab reads it instead of
// the log, whose wording may change); the outbox, not the journal, is what
// reaches the server. It is bounded: past MaxJournal bytes the file moves to
// events.jsonl.1 (replacing the one before) and a new one starts. A line cut
// short by a crash is skipped by ReadJournal.
const (
	JournalName = "events.jsonl"
	MaxJournal  = 1 << 20
	// maxJournalLine bounds a line ReadJournal takes (an event within the
	// wire's bounds is far smaller).
	maxJournalLine = 256 << 10
)

// journal appends ev to the root's journal. Failures are the caller's to
// log; they never stop the daemon.
func journal(root string, ev wire.Event) error {
	dir := filepath.Join(root, StatusDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dir, JournalName)
	if fi, err := os.Stat(path); err == nil && fi.Size() >= MaxJournal {
		if err := atomicfile.Rename(path, path+".1"); err != nil {
			return err
		}
	}
	line, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, werr := f.Write(append(line, '\n'))
	return errors.Join(werr, f.Close())
}

// ReadJournal returns the events in root's journal, oldest first (the
// rotated file's, then the current one's); a root without one has none.
func ReadJournal(root string) ([]wire.Event, error) {
	var out []wire.Event
	for _, name := range []string{JournalName + ".1", JournalName} {
		f, err := os.Open(filepath.Join(root, StatusDir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return out, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), maxJournalLine)
		for sc.Scan() {
			var ev wire.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				out = append(out, ev)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

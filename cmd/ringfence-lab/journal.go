package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/wire"
)

// eventKind is what a host did, in the lab's words (the table's columns).
type eventKind string

// What a host did, as its daemon's journal says: the wire events it queued
// for the server (daemon.ReadJournal's file), so the lab and the server read
// the same contract. The lab never reads the daemons' logs, whose wording
// is for people and may change.
const (
	evInstalled           = eventKind(wire.EventInstalled) // staged, activated as a trial, handed to the agent's loader
	evTrial     eventKind = "trial"                        // the agent loaded it and runs: its health window started
	evHealthy             = eventKind(wire.EventHealthy)   // the trial passed its health window: last-known-good
	evCrashed   eventKind = "crashed"                      // the agent died
	evReverted            = eventKind(wire.EventReverted)  // the boot guard fell back to last-known-good and quarantined it
	evRejected  eventKind = "rejected"                     // the host's validator or preflight refused it
	evRecalled  eventKind = "recalled"                     // the signed plan denies it (rolled back upstream): back to last-known-good
)

func (k eventKind) String() string { return string(k) }

// The host-side checks that refuse content (hostEvent.Check).
const (
	checkValidation = "validation"
	checkPreflight  = "preflight"
)

// hostEvent is one thing a host did.
type hostEvent struct {
	Kind    eventKind
	Channel uint32 // 0: none (a crash outside any trial)
	Version uint32
	Time    time.Time // the daemon's clock
	// Detail is the agent's last words (crashed), the check's first problem
	// (rejected), why and what runs now (reverted), what runs now
	// (recalled).
	Detail string
	Check  string   // rejected: checkValidation or checkPreflight
	Codes  []string // rejected: the check's problem codes
	Reason string   // reverted: the boot guard's reason ("load-crash")
	During string   // crashed: "load" or "run", as the daemon says
}

// hostEventOf maps a journal event to what the lab counts, if it counts it.
func hostEventOf(ev wire.Event) (hostEvent, bool) {
	out := hostEvent{Channel: ev.Channel, Version: ev.Version, Time: ev.Time}
	switch ev.Kind {
	case wire.EventInstalled:
		out.Kind = evInstalled
	case wire.EventTrialStarted:
		out.Kind = evTrial
	case wire.EventHealthy:
		out.Kind = evHealthy
	case wire.EventSensorCrashed:
		out.Kind, out.Detail, out.During = evCrashed, crashWords(ev.Evidence["stderr"], ev.Reason), ev.Evidence["during"]
	case wire.EventReverted:
		// A revert on request is the daemon leaving a version the signed
		// plan denies (the lab's hosts have no admin); any other reason is
		// the boot guard's own.
		if ev.Reason == bootguard.ReasonManual.String() {
			out.Kind, out.Detail = evRecalled, ev.Evidence["running"]
		} else {
			out.Kind, out.Reason, out.Detail = evReverted, ev.Reason, ev.Reason+"; running "+ev.Evidence["running"]
		}
	case wire.EventRejectedValidation:
		out.Kind, out.Check, out.Codes, out.Detail = evRejected, checkValidation, ev.Codes, firstProblem(ev.Reason, ev.Codes)
	case wire.EventRejectedPreflight:
		out.Kind, out.Check, out.Codes, out.Detail = evRejected, checkPreflight, ev.Codes, firstProblem(ev.Reason, ev.Codes)
	default:
		return out, false
	}
	return out, true
}

// crashWords picks the agent's telling last words: its panic line, else
// its first line, else how it exited.
func crashWords(stderr, exit string) string {
	for _, l := range strings.Split(stderr, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "panic:") {
			return l
		}
	}
	if l := strings.TrimSpace(strings.SplitN(stderr, "\n", 2)[0]); l != "" {
		return l
	}
	return exit
}

// firstProblem is the check's first problem in a rejection's reason: from
// the first of the event's problem codes it names to the next one ("CODE:
// message; CODE: message"). Without codes it names, the whole reason.
func firstProblem(reason string, codes []string) string {
	at := func(s string, from int) int {
		best := -1
		for _, c := range codes {
			if i := strings.Index(s[from:], c+": "); i >= 0 && (best < 0 || from+i < best) {
				best = from + i
			}
		}
		return best
	}
	start := at(reason, 0)
	if start < 0 {
		return reason
	}
	p := reason[start:]
	for from := 0; ; {
		i := strings.Index(p[from:], "; ")
		if i < 0 {
			return p
		}
		if next := at(p, from+i+2); next == from+i+2 {
			return p[:from+i]
		}
		from += i + 2
	}
}

// maxJournalRead bounds one read of a host's journal: the file rotates at
// daemon.MaxJournal, so one read takes all of it.
const maxJournalRead = 2 * daemon.MaxJournal

// journalFollower reads a host's journal as it grows: the events it has not
// returned yet, each once, whole lines only.
//
// Its cursor is the Seq of the last event returned: a host's Seqs only
// grow. It reads the current file from where it stopped; when the daemon
// has rotated the file since (the first line is not the one it saw
// there), it reads the rotated file and the new one from the start and
// skips what it returned before by Seq.
type journalFollower struct {
	dir   string // <root>/daemon
	off   int64  // bytes of whole lines taken from the current file
	first []byte // the current file's first line
	last  uint64 // the Seq of the last event returned
}

func newJournalFollower(root string) *journalFollower {
	return &journalFollower{dir: filepath.Join(root, daemon.StatusDir)}
}

// read returns the host's events since the last read.
func (f *journalFollower) read() []hostEvent {
	var out []hostEvent
	for _, ev := range f.next() {
		if h, ok := hostEventOf(ev); ok {
			out = append(out, h)
		}
	}
	return out
}

// next returns the journal's events not returned before, oldest first.
func (f *journalFollower) next() []wire.Event {
	path := filepath.Join(f.dir, daemon.JournalName)
	var evs []wire.Event
	fh, err := os.Open(path)
	if err != nil {
		// No journal yet, or the daemon is between a rotation's rename
		// and its next line: what the old file held is in the rotated one.
		if f.off > 0 {
			evs, f.off, f.first = readJournalFile(path+".1"), 0, nil
		}
		return f.since(evs)
	}
	defer fh.Close()
	// One open file throughout: a rotation after this point moves it, and
	// it reads on as it was.
	if f.off == 0 || !startsWith(fh, f.first) {
		// The start, or a rotation since the last read: what the old file
		// held past the cursor is in the rotated one now.
		evs, f.off, f.first = readJournalFile(path+".1"), 0, nil
	}
	cur, n, first := readLines(io.NewSectionReader(fh, f.off, maxJournalRead))
	if f.off == 0 {
		f.first = first
	}
	f.off += n
	return f.since(append(evs, cur...))
}

// since returns the events after the cursor, and moves it.
func (f *journalFollower) since(evs []wire.Event) []wire.Event {
	var out []wire.Event
	for _, ev := range evs {
		if ev.Seq > f.last {
			out = append(out, ev)
			f.last = ev.Seq
		}
	}
	return out
}

// startsWith reports whether the file begins with line.
func startsWith(r io.ReaderAt, line []byte) bool {
	b := make([]byte, len(line))
	n, _ := r.ReadAt(b, 0)
	return n == len(line) && bytes.Equal(b, line)
}

// readJournalFile returns the events of a whole journal file (none if it
// does not exist).
func readJournalFile(path string) []wire.Event {
	fh, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer fh.Close()
	evs, _, _ := readLines(io.LimitReader(fh, maxJournalRead))
	return evs
}

// readLines reads a journal: the events of its whole lines, how many bytes
// those lines take, and the first of them. A last line without its newline
// is being written: it is left for the next read. A line that is not an
// event (cut short by a crash, then appended to) is skipped, but for an
// event that starts inside it.
func readLines(r io.Reader) ([]wire.Event, int64, []byte) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, 0, nil
	}
	cut := bytes.LastIndexByte(b, '\n')
	if cut < 0 {
		if len(b) == maxJournalRead {
			return nil, int64(len(b)), nil // no line is this long: not a journal
		}
		return nil, 0, nil
	}
	var out []wire.Event
	var first []byte
	for _, line := range bytes.Split(b[:cut], []byte("\n")) {
		if first == nil {
			first = append(append([]byte{}, line...), '\n')
		}
		if ev, ok := parseJournalLine(line); ok {
			out = append(out, ev)
		}
	}
	return out, int64(cut + 1), first
}

// eventStart begins every journal line: wire.Event's first field.
var eventStart = []byte(`{"id":`)

func parseJournalLine(line []byte) (wire.Event, bool) {
	var ev wire.Event
	if json.Unmarshal(line, &ev) == nil && ev.Seq != 0 {
		return ev, true
	}
	if i := bytes.LastIndex(line, eventStart); i > 0 {
		return parseJournalLine(line[i:])
	}
	return ev, false
}

package main

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// What a host did, as its daemon logs it. The lab reads each daemon's log
// (slog's text format) rather than its state.db, which the daemon holds.
const (
	evInstalled = "installed" // staged, activated as a trial, handed to the agent's loader
	evTrial     = "trial"     // the agent loaded it and runs: its health window started
	evHealthy   = "healthy"   // the trial passed its health window: last-known-good
	evCrashed   = "crashed"   // the agent died
	evReverted  = "reverted"  // the boot guard fell back to last-known-good and quarantined it
	evRejected  = "rejected"  // the host's validator or preflight refused it
	evRecalled  = "recalled"  // the signed plan denies it (rolled back upstream): back to last-known-good
)

// hostEvent is one thing a host did.
type hostEvent struct {
	Kind    string
	Version uint32
	Time    time.Time // the daemon's log time
	Detail  string    // why (rejected), the crash's last words, what runs now (reverted)
}

// The daemon's log messages the lab understands (daemon/ and
// cmd/ringfenced); a change there shows up as a failing lab test.
const (
	msgInstalled = "content installed as a trial; restarting the agent to load it"
	msgTrial     = "trial started"
	msgHealthy   = "trial passed its health window: new last-known-good"
	msgDied      = "the agent died; the boot guard decides what it loads next"
	msgReverted  = "content reverted by the boot guard and quarantined"
	msgPoll      = "poll"
)

// parseEvent turns one daemon log line into an event, if it is one.
func parseEvent(line string) (hostEvent, bool) {
	kv := parseLogfmt(line)
	ev := hostEvent{}
	if t, err := time.Parse(time.RFC3339Nano, kv["time"]); err == nil {
		ev.Time = t
	}
	if v, err := strconv.ParseUint(kv["version"], 10, 32); err == nil {
		ev.Version = uint32(v)
	}
	switch kv["msg"] {
	case msgInstalled:
		ev.Kind = evInstalled
	case msgTrial:
		ev.Kind = evTrial
	case msgHealthy:
		ev.Kind = evHealthy
	case msgDied:
		ev.Kind, ev.Detail = evCrashed, crashWords(kv["stderr"], kv["err"])
	case msgReverted:
		if kv["reason"] == "manual" {
			return ev, false // the poll that reverted a denied version says so
		}
		ev.Kind, ev.Detail = evReverted, kv["reason"]+"; running "+kv["running"]
	case msgPoll:
		switch kv["action"] {
		case "rejected":
			ev.Kind, ev.Detail = evRejected, kv["why"]
		case "reverted":
			ev.Kind, ev.Detail = evRecalled, kv["why"]
		default:
			return ev, false
		}
	default:
		return ev, false
	}
	return ev, true
}

// crashWords picks the agent's telling last words: its panic line.
func crashWords(stderr, err string) string {
	for _, l := range strings.Split(stderr, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "panic:") {
			return l
		}
	}
	if l := strings.TrimSpace(strings.SplitN(stderr, "\n", 2)[0]); l != "" {
		return l
	}
	return err
}

// rejectedBy says which check refused content, from the daemon's reason:
// "validation" (the installer's validator) or "preflight".
func rejectedBy(why string) string {
	if strings.HasPrefix(why, "preflight") {
		return "preflight"
	}
	return "validation"
}

// rejectSummary is the validator's or preflight's own words, without the
// wrapping.
func rejectSummary(why string) string {
	for _, p := range []string{"installer: content failed validation: ", "validator: rejected: ", "preflight: "} {
		why = strings.TrimPrefix(why, p)
	}
	return why
}

// parseLogfmt reads slog's text format: key=value pairs, values bare or
// Go-quoted.
func parseLogfmt(line string) map[string]string {
	out := map[string]string{}
	s := line
	for {
		s = strings.TrimLeft(s, " ")
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return out
		}
		key := s[:eq]
		if strings.ContainsAny(key, " \"") {
			return out
		}
		s = s[eq+1:]
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return out
			}
			v, _ := strconv.Unquote(q)
			out[key] = v
			s = s[len(q):]
			continue
		}
		end := strings.IndexByte(s, ' ')
		if end < 0 {
			out[key] = s
			return out
		}
		out[key], s = s[:end], s[end:]
	}
}

// maxLogRead bounds what one read of a host's log takes in.
const maxLogRead = 4 << 20

// logFollower reads a daemon's log as it grows, whole lines only.
type logFollower struct {
	path    string
	off     int64
	partial []byte
}

// read returns the events logged since the last read.
func (f *logFollower) read() []hostEvent {
	fh, err := os.Open(f.path)
	if err != nil {
		return nil
	}
	defer fh.Close()
	if _, err := fh.Seek(f.off, io.SeekStart); err != nil {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(fh, maxLogRead))
	if err != nil || len(b) == 0 {
		return nil
	}
	f.off += int64(len(b))
	b = append(f.partial, b...)
	cut := bytes.LastIndexByte(b, '\n')
	if cut < 0 {
		f.partial = b
		return nil
	}
	f.partial = append([]byte(nil), b[cut+1:]...)
	var out []hostEvent
	for _, line := range strings.Split(string(b[:cut]), "\n") {
		if ev, ok := parseEvent(line); ok {
			out = append(out, ev)
		}
	}
	return out
}

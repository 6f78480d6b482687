package daemon

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/wire"
)

// Status is what the daemon last did, written to <root>/daemon/status.json
// for `ringfence status` and people. It lives in its own directory: the
// agent's loader cleans the root's temporary files while the daemon may be
// writing this one.
type Status struct {
	HostID    string     `json:"host_id"`
	Channels  []uint32   `json:"channels"`
	Agent     AgentState `json:"agent"`
	Running   string     `json:"running"`
	LastPoll  time.Time  `json:"last_poll"`
	Poll      PollResult `json:"poll"`
	LastCrash string     `json:"last_crash,omitempty"`
	// Admission is the host's standing with the rollout server, as its
	// last answer said (pending: an operator has not admitted the host
	// yet, and nothing it reports counts); Telemetry is the last send's
	// outcome ("sent", or why not).
	Admission wire.Admission `json:"admission,omitempty"`
	Telemetry string         `json:"telemetry,omitempty"`
	// Metrics is the address /metrics is served on (metrics_listen, its
	// port chosen when it said 0); empty when it is not served.
	Metrics string `json:"metrics,omitempty"`
}

// StatusDir and StatusName place the daemon's status file in the root.
const (
	StatusDir  = "daemon"
	StatusName = "status.json"
)

// maxStatusFile bounds the status file ReadStatus reads.
const maxStatusFile = 1 << 20

// AgentState is what the supervised agent is doing.
type AgentState string

// Agent states.
const (
	AgentStarting   AgentState = "starting"   // started; its loader has not reported its load yet
	AgentRunning    AgentState = "running"    // loaded and running
	AgentRestarting AgentState = "restarting" // it died; it is started again after a delay
)

func (a AgentState) String() string { return string(a) }

// ReadStatus reads the status a daemon last wrote under root.
func ReadStatus(root string) (Status, error) {
	var st Status
	b, err := boundedio.ReadFile(filepath.Join(root, StatusDir, StatusName), maxStatusFile)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// setStatus changes the status with f, shows it to Options.Observe and
// writes the status file.
func (d *Daemon) setStatus(f func(*Status)) {
	f(&d.status)
	if d.onStatus != nil {
		d.onStatus(d.status)
	}
	b, err := json.MarshalIndent(d.status, "", "  ")
	if err != nil {
		return
	}
	dir := filepath.Join(d.cfg.Root, StatusDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		d.log.Warn("status directory", "err", err)
		return
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, StatusName), append(b, '\n'), 0o644); err != nil {
		d.log.Warn("write the status file", "err", err)
	}
}

// readBoot reads the boot record at path. One it cannot read comes back as
// the zero Record, which has nothing active: the status, the heartbeat and
// each telemetry batch then say the host runs no content, and nothing is
// reverted or marked good. (The poll reads the record itself: it must tell
// an unreadable record from an empty one.)
func readBoot(path string) bootguard.Record {
	rec, err := bootguard.Read(path)
	if err != nil {
		return bootguard.Record{}
	}
	return rec
}

// activeEntry returns the entry rec has active, and false when it runs no
// content.
func activeEntry(rec bootguard.Record) (bootguard.Entry, bool) {
	if rec.Active == bootguard.SlotNone {
		return bootguard.Entry{}, false
	}
	return *rec.Entry(rec.Active), true
}

// describe says what content e is: "channel 291 version 1001 (TRIAL)".
func describe(e bootguard.Entry) string {
	return fmt.Sprintf("channel %d version %d (%v)", e.Channel, e.Version, e.State)
}

// describeRunning says what every channel the host follows has active
// (Status.Running): describeActive's words, joined by "; " ("no content"
// when no channel has any).
func (d *Daemon) describeRunning() string {
	var parts []string
	some := false
	for _, ch := range d.cfg.Followed() {
		rec := readBoot(installer.RecordPathOf(d.cfg.Root, ch))
		if _, ok := activeEntry(rec); ok {
			parts = append(parts, describeActive(rec))
			some = true
		} else {
			parts = append(parts, fmt.Sprintf("channel %d: no content", ch))
		}
	}
	if !some {
		return "no content"
	}
	return strings.Join(parts, "; ")
}

// describeActive says what rec has active: describe's words, or "no
// content".
func describeActive(rec bootguard.Record) string {
	if e, ok := activeEntry(rec); ok {
		return describe(e)
	}
	return "no content"
}

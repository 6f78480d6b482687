package daemon

import (
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/wire"
)

// LineHealth starts the agent's health line (docs/ringfenced.md): its
// counters since it printed "ready", as HealthLine formats them. The
// reference agent prints one every second.
const LineHealth = "health"

// HealthLine formats m as the agent's health line:
//
//	health events=N busy_ns=N latency_us=C0,C1,...
//
// events is how many events the sensor processed since "ready", busy_ns
// the time they took together, and latency_us how many took at most each
// bound of sensor.LatencyBounds (microseconds) and more than the one
// before, then how many took more than the last: sensor.LatencyBuckets
// counts. Every figure only grows while the agent runs.
func HealthLine(m sensor.Meter) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s events=%d busy_ns=%d latency_us=", LineHealth, m.Events, m.Busy.Nanoseconds())
	for i, n := range m.Latency {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(n, 10))
	}
	return b.String()
}

// ParseHealthLine reads a line HealthLine wrote (what the daemon takes
// from an agent's stdout). Keys it does not know are skipped (a newer agent
// may say more); a missing or malformed one is an error.
func ParseHealthLine(line string) (sensor.Meter, error) {
	var m sensor.Meter
	rest, ok := strings.CutPrefix(line, LineHealth+" ")
	if !ok {
		return m, errors.New("not a health line")
	}
	seen := 0
	for _, f := range strings.Fields(rest) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "events":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return m, fmt.Errorf("events=%.30q is not a count", v)
			}
			m.Events = n
		case "busy_ns":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return m, fmt.Errorf("busy_ns=%.30q is not a duration in nanoseconds", v)
			}
			m.Busy = time.Duration(n)
		case "latency_us":
			counts := strings.Split(v, ",")
			if len(counts) != sensor.LatencyBuckets {
				return m, fmt.Errorf("latency_us has %d counts; want %d, one per bucket of sensor.LatencyBounds and the overflow", len(counts), sensor.LatencyBuckets)
			}
			for i, c := range counts {
				n, err := strconv.ParseUint(c, 10, 64)
				if err != nil {
					return m, fmt.Errorf("latency_us: count %d, %.30q, is not a count", i+1, c)
				}
				m.Latency[i] = n
			}
		default:
			continue
		}
		seen++
	}
	if seen != 3 {
		return m, errors.New("want events=, busy_ns= and latency_us= once each")
	}
	return m, nil
}

// health measures the agent over windows and keeps the last sample, which
// every telemetry batch carries (wire.Health). A window starts when the
// agent reports its load (the content it runs cannot change without a new
// load) and at each sample, taken when the daemon sends telemetry. The
// agent's process is measured from outside (CPU time, resident memory:
// proc); its own counters come in its health lines (events, latency).
//
// The loop owns it; mu guards what /metrics reads from other goroutines.
type health struct {
	mu       sync.Mutex
	agent    *agent            // the loaded agent whose window runs; nil when none
	versions map[string]uint32 // the content it loaded, as a batch's versions say it

	start   time.Time    // the window's start
	cpu     usage        // the agent's usage then; cpuOK says it was read
	cpuOK   bool         //
	meter   sensor.Meter // the agent's counters then; meterOK says they are known
	meterOK bool         //
	latest  *wire.Health // the last sample; nil when there is none for the content
	of      map[string]uint32
}

// minHealthWindow is the shortest window a sample covers: a shorter one
// says more about the clock's resolution than about the agent.
const minHealthWindow = time.Second

// begin starts a window for a, which has just loaded versions.
func (h *health) begin(a *agent, versions map[string]uint32, now time.Time) {
	h.mu.Lock()
	h.agent, h.versions = a, versions
	h.mu.Unlock()
	// The agent counts from its "ready": zero is exact here, line or not.
	h.start, h.meter, h.meterOK, h.latest, h.of = now, sensor.Meter{}, true, nil, nil
	h.cpu, h.cpuOK = readUsage(a)
}

// end: the agent stopped or died; what it did is no sample of the next.
func (h *health) end() {
	h.mu.Lock()
	h.agent = nil
	h.mu.Unlock()
	h.latest, h.of = nil, nil
}

// sample closes the window at now and starts the next one. The sample is
// skipped (none until the next) when the window is shorter than
// minHealthWindow (the window goes on), longer than wire.MaxHealthWindow,
// or when a figure is not known: the process could not be measured, or the
// agent printed no health line since its load (a vendor's agent that does
// not print them sends no health: zero events would be a claim).
func (h *health) sample(now time.Time) {
	a := h.agent
	if a == nil {
		return
	}
	win := now.Sub(h.start)
	if win < minHealthWindow {
		return
	}
	u, uOK := readUsage(a)
	m, mOK := a.reading()
	prevU, prevUOK, prevM, prevMOK := h.cpu, h.cpuOK, h.meter, h.meterOK
	// The next window starts now, from what is known now: counters not
	// yet reported leave its start unknown, and so its sample out.
	h.start, h.cpu, h.cpuOK, h.meter, h.meterOK = now, u, uOK, m, mOK
	h.latest, h.of = nil, nil
	if !uOK || !prevUOK || !mOK || !prevMOK || win > wire.MaxHealthWindow*time.Second {
		return
	}
	d, err := m.Sub(prevM)
	if err != nil {
		return
	}
	s := &wire.Health{
		Seconds:       win.Seconds(),
		CPU:           min(max((u.CPU-prevU.CPU).Seconds(), 0)/win.Seconds(), wire.MaxHealthCPU),
		RSS:           u.RSS,
		Events:        d.Events,
		LatencyMicros: min(d.Quantile(0.99), wire.MaxHealthLatency),
	}
	if s.Check() != nil {
		return // never a batch the server refuses whole
	}
	h.latest, h.of = s, h.versions
}

// forBatch is the sample a batch saying versions carries: the last one,
// when it was measured on those very versions.
func (h *health) forBatch(versions map[string]uint32) *wire.Health {
	if h.latest == nil || !maps.Equal(h.of, versions) {
		return nil
	}
	s := *h.latest
	return &s
}

// current is what /metrics shows: the loaded agent (nil when none) and the
// content it loaded.
func (h *health) current() (*agent, map[string]uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.agent, h.versions
}

// readUsage measures a's process, and reports whether it could.
func readUsage(a *agent) (usage, bool) {
	u, err := a.proc.usage()
	return u, err == nil
}

package daemon

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/wire"
)

func TestHealthLineRoundTrip(t *testing.T) {
	var m sensor.Meter
	for _, d := range []time.Duration{0, 3 * time.Microsecond, 700 * time.Microsecond, time.Minute} {
		m.Observe(d)
	}
	line := HealthLine(m)
	require.True(t, strings.HasPrefix(line, "health events=4 busy_ns=60000703000 latency_us=1,0,1,"), line)
	got, err := ParseHealthLine(line)
	require.NoError(t, err)
	require.Equal(t, m, got)
	// A newer agent may say more; the order of the keys is free.
	got, err = ParseHealthLine("health latency_us=" + strings.Repeat("0,", sensor.LatencyBuckets-1) + "5 queue=3 busy_ns=9 events=5")
	require.NoError(t, err)
	require.Equal(t, uint64(5), got.Events)
	require.Equal(t, uint64(5), got.Latency[sensor.LatencyBuckets-1])
}

func TestHealthLineRefused(t *testing.T) {
	counts := strings.Repeat("0,", sensor.LatencyBuckets-1) + "0"
	for _, tc := range []struct{ line, want string }{
		{"alive events=3", "not a health line"},
		{"health events=3 busy_ns=1", "want events=, busy_ns= and latency_us="},
		{"health events=-3 busy_ns=1 latency_us=" + counts, "events="},
		{"health events=3 busy_ns=-1 latency_us=" + counts, "busy_ns="},
		{"health events=3 busy_ns=1 latency_us=1,2,3", "latency_us has 3 counts; want 23"},
		{"health events=3 busy_ns=1 latency_us=" + strings.Replace(counts, "0", "x", 1), "count 1"},
	} {
		_, err := ParseHealthLine(tc.line)
		require.ErrorContains(t, err, tc.want, tc.line)
	}
}

// selfAgent is an agent whose process is this test's own: what the
// platform measures of it is real.
func selfAgent(t *testing.T) *agent {
	t.Helper()
	p, err := openProc(os.Getpid())
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skip("this platform's process accounting is not read (usage_other.go)")
	}
	require.NoError(t, err)
	t.Cleanup(p.close)
	return &agent{proc: p}
}

func (a *agent) setReading(m sensor.Meter) {
	a.mu.Lock()
	a.meter, a.metered = m, true
	a.mu.Unlock()
}

// TestHealthSample: a window runs from the agent's load, or the last
// sample, to the next sample; a sample is skipped (nil) when the window is
// under a second, over wire.MaxHealthWindow, or a figure is unknown, and a
// batch carries it only with the versions it was measured on.
func TestHealthSample(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	v1 := map[string]uint32{"291": 1001, "292": 0}
	v2 := map[string]uint32{"291": 1002, "292": 0}
	var m sensor.Meter
	observe := func(n int, d time.Duration) {
		for range n {
			m.Observe(d)
		}
	}

	var h health
	h.sample(t0) // no agent: nothing
	require.Nil(t, h.forBatch(v1))

	// An agent that has not printed a health line by the first sample:
	// nothing is known of its events then, nor of what it counted by the
	// start of the next window.
	late := selfAgent(t)
	h.begin(late, v1, t0)
	h.sample(t0.Add(30 * time.Second))
	require.Nil(t, h.forBatch(v1), "no health line from the agent yet: nothing known of its events")
	late.setReading(sensor.Meter{Events: 500, Latency: [sensor.LatencyBuckets]uint64{500}})
	h.sample(t0.Add(60 * time.Second))
	require.Nil(t, h.forBatch(v1), "the 500 events may be of the window before: no sample")
	late.setReading(sensor.Meter{Events: 600, Latency: [sensor.LatencyBuckets]uint64{600}})
	h.sample(t0.Add(90 * time.Second))
	require.Equal(t, uint64(100), h.forBatch(v1).Events, "known at both ends")

	a := selfAgent(t)
	h.begin(a, v1, t0)
	h.sample(t0.Add(30 * time.Second))
	require.Nil(t, h.forBatch(v1), "a new load: no health line from this agent yet")
	h.begin(a, v1, t0.Add(30*time.Second)) // loaded again, as after a restart

	observe(985, 40*time.Microsecond)
	observe(15, 3*time.Millisecond)
	a.setReading(m)
	h.sample(t0.Add(30*time.Second + 500*time.Millisecond))
	require.Nil(t, h.forBatch(v1), "a half-second window is no sample; the window goes on")
	h.sample(t0.Add(90 * time.Second))
	s := h.forBatch(v1)
	require.NotNil(t, s)
	require.NoError(t, s.Check())
	require.Equal(t, 60.0, s.Seconds, "from the last sample")
	require.Equal(t, uint64(1000), s.Events)
	require.InDelta(t, 3000, s.LatencyMicros, 1e-6, "the 99th percentile: the 990th event, the 5th of 15 in the bucket 2-5 ms")
	require.Positive(t, s.RSS, "this process is resident")
	require.GreaterOrEqual(t, s.CPU, 0.0)
	require.Nil(t, h.forBatch(v2), "a batch that says other versions carries no sample of these")
	require.Equal(t, s, h.forBatch(v1), "every batch until the next sample carries it")

	// The next window counts only what happened in it.
	observe(5, time.Microsecond)
	a.setReading(m)
	h.sample(t0.Add(100 * time.Second))
	s = h.forBatch(v1)
	require.NotNil(t, s)
	require.Equal(t, 10.0, s.Seconds)
	require.Equal(t, uint64(5), s.Events)
	require.InDelta(t, 0.99*5/5, s.LatencyMicros, 1e-9)

	// A window with no new health line: the agent processed nothing, as
	// far as it says; the figures the daemon measures still count.
	h.sample(t0.Add(110 * time.Second))
	s = h.forBatch(v1)
	require.NotNil(t, s)
	require.Zero(t, s.Events)
	require.Zero(t, s.LatencyMicros)

	// Counters that went back are not of this run: no sample.
	a.setReading(sensor.Meter{Events: 1})
	h.sample(t0.Add(120 * time.Second))
	require.Nil(t, h.forBatch(v1))

	// A window longer than the wire allows: no sample, and the next
	// window starts from it.
	observe(1, time.Microsecond)
	a.setReading(m)
	h.sample(t0.Add(120*time.Second + wire.MaxHealthWindow*time.Second + time.Second))
	require.Nil(t, h.forBatch(v1))

	// A new load (new content): the window starts over, the old sample
	// is gone, and the agent's counters start from zero.
	b := selfAgent(t)
	later := t0.Add(200_000 * time.Second)
	h.begin(b, v2, later)
	require.Nil(t, h.forBatch(v2))
	var mb sensor.Meter
	mb.Observe(10 * time.Microsecond)
	b.setReading(mb)
	h.sample(later.Add(5 * time.Second))
	s = h.forBatch(v2)
	require.NotNil(t, s)
	require.Equal(t, uint64(1), s.Events)
	require.Nil(t, h.forBatch(v1))

	h.end()
	require.Nil(t, h.forBatch(v2), "the agent stopped: its sample goes with it")
	h.sample(later.Add(time.Minute))
	require.Nil(t, h.forBatch(v2))
}

// TestHealthSampleCPU: the CPU figure is the process's CPU time over the
// window, per second of it.
func TestHealthSampleCPU(t *testing.T) {
	a := selfAgent(t)
	a.setReading(sensor.Meter{})
	t0 := time.Unix(1_800_000_000, 0)
	var h health
	h.begin(a, nil, t0)
	u0, err := a.proc.usage()
	require.NoError(t, err)
	burn(t, a.proc, u0.CPU+200*time.Millisecond)
	h.sample(t0.Add(time.Second))
	s := h.forBatch(nil)
	require.NotNil(t, s)
	require.GreaterOrEqual(t, s.CPU, 0.2)
	require.LessOrEqual(t, s.CPU, float64(runtime.NumCPU()), "more than every core for the whole second: the units are wrong")
}

// burn spins until p's CPU time reaches cpu, bounded in wall-clock time.
func burn(t *testing.T, p *proc, cpu time.Duration) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	x := 0
	for {
		for i := range 1_000_000 {
			x += i * i
		}
		u, err := p.usage()
		require.NoError(t, err)
		if u.CPU >= cpu {
			return
		}
		require.True(t, time.Now().Before(deadline), "the CPU time stayed at %v while this process spun for 20 s (%d)", u.CPU, x)
	}
}

package daemon_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/validator"
	"github.com/ringfence/ringfence/wire"
)

// healthHost starts one host whose agent prints its health line every
// 100 ms, with a one-minute telemetry interval and /metrics on a loopback
// port of the system's choosing; readings receives the agent's counters
// as the daemon reads them.
func healthHost(t testing.TB, l *lab, clk *clock.Fake, bin string, adjust ...func(*daemon.Options)) (h *host, readings <-chan sensor.Meter) {
	t.Helper()
	ch := make(chan sensor.Meter, 64)
	ctx, cancel := context.WithCancel(context.Background())
	h = startHost(t, ctx, l, clk, bin, 0, append([]func(*daemon.Options){func(o *daemon.Options) {
		o.Config.Telemetry.Interval = hostconfig.Duration{Duration: time.Minute}
		o.Config.MetricsListen = "127.0.0.1:0"
		o.AgentCommand = append(o.AgentCommand, "--health-interval", "100ms")
		o.ObserveHealth = func(m sensor.Meter) {
			select {
			case ch <- m:
			default: // the test reads the latest ones; older ones may go
			}
		}
	}}, adjust...)...)
	t.Cleanup(func() { cancel(); require.NoError(t, <-h.done) })
	return h, ch
}

// waitEvents returns the first reading of the agent that counts at least
// n events; the deadline bounds a broken test.
func waitEvents(t testing.TB, readings <-chan sensor.Meter, n uint64) sensor.Meter {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case m := <-readings:
			if m.Events >= n {
				return m
			}
		case <-deadline:
			t.Fatalf("the agent reported fewer than %d events in 60 s", n)
		}
	}
}

// waitHealth returns the first batch host sends from now on that carries
// a health sample.
func (l *lab) waitHealth(t testing.TB, host string) wire.HostInfo {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		l.mu.Lock()
		for _, info := range l.infos[host] {
			if info.Health != nil {
				l.mu.Unlock()
				return info
			}
		}
		l.mu.Unlock()
		select {
		case <-l.got:
		case <-deadline:
			t.Fatalf("%s sent no batch with its agent's health in 60 s", host)
		}
	}
}

// TestAgentHealthReported: the real agent, on a trial of good content,
// prints its counters; the next telemetry batch carries a health sample
// of the minute since the agent's load (the daemon's clock), measured on
// the version the batch says the host runs: the events the sensor
// evaluated, their 99th percentile latency, and the process's CPU and
// resident memory as the operating system accounts them. /metrics, on a
// loopback port, serves the same, read over real HTTP.
func TestAgentHealthReported(t *testing.T) {
	bin := buildRingfenced(t)
	clk := clock.NewFake(time.Now())
	l := newLab(t, clk)
	v := l.roll(t, "good-ipc-1001")
	h, readings := healthHost(t, l, clk, bin)
	h.waitFor(t, "the agent running", func(s daemon.Status) bool { return s.Agent == daemon.AgentRunning })
	_, err := h.d.Poll(context.Background())
	require.NoError(t, err)
	h.waitFor(t, "the trial", running(fmt.Sprintf("channel 291 version %d (TRIAL)", v)))
	require.NotEmpty(t, h.last.Metrics, "metrics_listen is set: the status says where /metrics is")

	// The trial's agent has evaluated events (the agent before it had
	// no content, and counted none).
	seen := waitEvents(t, readings, 1)
	clk.Advance(time.Minute)
	info := l.waitHealth(t, h.id)
	require.Equal(t, map[string]uint32{"291": v}, info.Versions)
	s := info.Health
	t.Logf("the batch's health: %+v", *s)
	require.NoError(t, s.Check())
	require.Equal(t, 60.0, s.Seconds, "the window: from the agent's load to the sample, on the daemon's clock")
	require.GreaterOrEqual(t, s.Events, seen.Events, "at least what the agent had said before the sample")
	require.Positive(t, s.LatencyMicros)
	require.Less(t, s.LatencyMicros, 1e6, "good content takes microseconds an event, not a second")
	require.Greater(t, s.RSS, uint64(1<<20), "a Go process is resident by megabytes")
	require.GreaterOrEqual(t, s.CPU, 0.0)

	// /metrics, read as a scraper does.
	m := scrape(t, "http://"+h.last.Metrics+"/metrics")
	require.Equal(t, 1.0, m[`ringfenced_agent_up`])
	require.Equal(t, float64(v), m[`ringfenced_content_version{channel="291"}`])
	require.GreaterOrEqual(t, m[`ringfenced_agent_events_total`], float64(seen.Events))
	require.Equal(t, m[`ringfenced_agent_events_total`], m[`ringfenced_agent_event_latency_seconds_count`], "every event has its latency")
	require.Equal(t, m[`ringfenced_agent_event_latency_seconds_count`], m[`ringfenced_agent_event_latency_seconds_bucket{le="+Inf"}`])
	require.Positive(t, m[`ringfenced_agent_event_latency_seconds_sum`])
	require.Greater(t, m[`ringfenced_agent_resident_bytes`], float64(1<<20))
	require.Contains(t, m, `ringfenced_agent_cpu_seconds_total`)
}

// BenchmarkLegacyAgentCost runs two hosts on content with a costly
// pattern (sensor's costlyPattern, "*?*?*?!", one instance) that passes
// validation and the reference preflight: one whose agent is the 7.11
// build (backtracking glob) and one whose agent is 7.12 (linear glob). It
// reports the health each host's daemon sends over a window of real time
// (the fake clock moved by as much): the agents' CPU (cores), their
// events and their latency (99th percentile), and the CPU ratio.
func BenchmarkLegacyAgentCost(b *testing.B) {
	bin := buildRingfenced(b)
	caps := filepath.Join(testfiles.Dir(), "capabilities")
	const window = 10 * time.Second
	for range b.N {
		clk := clock.NewFake(time.Now())
		l := newLab(b, clk)
		v := l.publish(b, costlyContent(b, 7001))
		var hosts [2]*host
		for i, sensorVersion := range []string{"7.11", "7.12"} {
			hosts[i], _ = healthHost(b, l, clk, bin, func(o *daemon.Options) {
				o.Config.Telemetry.Interval = hostconfig.Duration{Duration: window}
				o.AgentCommand = []string{bin, "agent", "--capabilities", filepath.Join(caps, "sensor-"+sensorVersion+".json"), "--alive-interval", "1h"}
			})
		}
		for _, h := range hosts {
			h.waitFor(b, "the agent running", func(s daemon.Status) bool { return s.Agent == daemon.AgentRunning })
			_, err := h.d.Poll(context.Background())
			require.NoError(b, err)
			h.waitFor(b, "the trial", running(fmt.Sprintf("channel 291 version %d (TRIAL)", v)))
		}
		time.Sleep(window) // a benchmark's measurement, in real time
		clk.Advance(window)
		var got [2]*wire.Health
		for i, h := range hosts {
			got[i] = l.waitHealth(b, h.id).Health
		}
		b.ReportMetric(got[0].CPU, "7.11-cpu")
		b.ReportMetric(got[1].CPU, "7.12-cpu")
		b.ReportMetric(got[0].CPU/max(got[1].CPU, 1e-3), "cpu-x")
		b.ReportMetric(got[0].LatencyMicros, "7.11-p99-us")
		b.ReportMetric(got[1].LatencyMicros, "7.12-p99-us")
		b.ReportMetric(float64(got[0].Events)/got[0].Seconds, "7.11-events/s")
		b.ReportMetric(float64(got[1].Events)/got[1].Seconds, "7.12-events/s")
	}
}

// costlyContent is an IPC channel file of version v whose one instance
// holds a pattern the 7.11 glob backtracks over at length (sensor's
// TestLegacyGlobCost counts how much).
func costlyContent(t testing.TB, v uint32) []byte {
	t.Helper()
	caps := testfiles.Capabilities(t, "7.12")
	tt := caps.Template(7)
	f := &validator.ChannelFile{Channel: 291, ContentVersion: v, TemplateType: 7, TemplateVersion: 1, Fields: make([]validator.FieldType, len(tt.Inputs))}
	for i := range f.Fields {
		f.Fields[i] = tt.Inputs[i].Type
	}
	f.Instances = []validator.Instance{{ID: 1, Action: validator.ActionAlert,
		Matchers: []validator.Matcher{{Field: 0, Kind: validator.MatchPattern, Str: "*?*?*?!"}}}}
	data, err := validator.Encode(f)
	require.NoError(t, err)
	return data
}

// sampleLine is one sample of Prometheus's text format: the series and
// its value.
var sampleLine = regexp.MustCompile(`(?m)^([a-z_]+(?:\{[^}]*\})?) (\S+)$`)

// scrape GETs url and returns its samples by series.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	require.NoError(t, err)
	out := map[string]float64{}
	for _, m := range sampleLine.FindAllStringSubmatch(string(body), -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		require.NoError(t, err, m[0])
		out[m[1]] = v
	}
	require.NotEmpty(t, out, "no samples in:\n%s", body)
	return out
}

package daemon

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ringfence/ringfence/sensor"
)

// The metrics /metrics serves (docs/ringfenced.md, "Metrics"), computed at
// each scrape from the agent the daemon runs: its process's accounting
// read then, its counters as its last health line gave them. The agent's
// counters start over with each agent process, as Prometheus counters may.
var (
	descAgentUp = prometheus.NewDesc("ringfenced_agent_up",
		"1 while the agent runs the content it loaded (after its \"ready\"), 0 otherwise.", nil, nil)
	descAgentCPU = prometheus.NewDesc("ringfenced_agent_cpu_seconds_total",
		"CPU time (user and system) of the agent's process since it started, as the operating system accounts it.", nil, nil)
	descAgentRSS = prometheus.NewDesc("ringfenced_agent_resident_bytes",
		"Resident memory of the agent's process (Linux: RSS; Windows: working set).", nil, nil)
	descAgentEvents = prometheus.NewDesc("ringfenced_agent_events_total",
		"Events the agent's sensor processed since it loaded its content.", nil, nil)
	descAgentLatency = prometheus.NewDesc("ringfenced_agent_event_latency_seconds",
		"Time the agent's sensor took over one event, since it loaded its content.", nil, nil)
	descContentVersion = prometheus.NewDesc("ringfenced_content_version",
		"Content version each channel's agent loaded last (0: no content).", []string{"channel"}, nil)
)

// latencyBuckets are sensor.LatencyBounds in seconds.
var latencyBuckets = func() []float64 {
	b := make([]float64, len(sensor.LatencyBounds))
	for i, us := range sensor.LatencyBounds {
		b[i] = us / 1e6
	}
	return b
}()

// agentCollector computes the agent's metrics at each scrape. It reads
// only what the loop hands over under health.mu and what the agent guards
// itself: a scrape never waits for the loop.
type agentCollector struct{ h *health }

func (agentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAgentUp, descAgentCPU, descAgentRSS, descAgentEvents, descAgentLatency, descContentVersion} {
		ch <- d
	}
}

func (c agentCollector) Collect(ch chan<- prometheus.Metric) {
	a, versions := c.h.current()
	for channel, v := range versions {
		ch <- prometheus.MustNewConstMetric(descContentVersion, prometheus.GaugeValue, float64(v), channel)
	}
	if a == nil {
		ch <- prometheus.MustNewConstMetric(descAgentUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descAgentUp, prometheus.GaugeValue, 1)
	if u, err := a.proc.usage(); err == nil {
		ch <- prometheus.MustNewConstMetric(descAgentCPU, prometheus.CounterValue, u.CPU.Seconds())
		ch <- prometheus.MustNewConstMetric(descAgentRSS, prometheus.GaugeValue, float64(u.RSS))
	}
	if m, ok := a.reading(); ok {
		ch <- prometheus.MustNewConstMetric(descAgentEvents, prometheus.CounterValue, float64(m.Events))
		buckets := make(map[float64]uint64, len(latencyBuckets))
		var cum uint64
		for i, b := range latencyBuckets {
			cum += m.Latency[i]
			buckets[b] = cum
		}
		ch <- prometheus.MustNewConstHistogram(descAgentLatency, cum+m.Latency[len(latencyBuckets)], m.Busy.Seconds(), buckets)
	}
}

// Bounds of the /metrics server: a scraper on the host, nothing more.
const (
	metricsReadTimeout  = 10 * time.Second
	metricsWriteTimeout = 10 * time.Second
	metricsMaxHeader    = 8 << 10
)

// serveMetrics serves /metrics on cfg.MetricsListen until stop is called,
// and returns the address it listens on. A listener that cannot be opened
// (the port is taken) is logged, and the daemon goes on without /metrics:
// the update path does not wait on a convenience.
func (d *Daemon) serveMetrics() (addr string, stop func()) {
	if d.cfg.MetricsListen == "" {
		return "", func() {}
	}
	ln, err := net.Listen("tcp", d.cfg.MetricsListen)
	if err != nil {
		d.log.Error("metrics_listen: cannot listen; ringfenced runs without /metrics", "err", err)
		return "", func() {}
	}
	if !d.cfg.MetricsLoopback() {
		d.log.Warn("metrics_listen is not a loopback address: whoever reaches this host on it reads the agent's health and the content versions it runs (docs/ringfenced.md, \"Metrics\")", "addr", ln.Addr().String())
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(agentCollector{&d.health})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      slog.NewLogLogger(d.log.Handler(), slog.LevelError),
		// One scrape at a time: a scraper gone wild costs one collection.
		MaxRequestsInFlight: 1,
	}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: metricsReadTimeout, ReadTimeout: metricsReadTimeout,
		WriteTimeout: metricsWriteTimeout, MaxHeaderBytes: metricsMaxHeader, ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			d.log.Error("metrics server", "err", err)
		}
	}()
	d.log.Info("serving the agent's metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = srv.Close()
		<-done
	}
}

package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ringfence/ringfence/fleetpg"
	"github.com/ringfence/ringfence/internal/pgtest"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/server/pgreplica"
	"github.com/ringfence/ringfence/wire"
)

// checkins sends n conditional GETs of timestamp.json from workers
// goroutines (keep-alive connections) and returns the rate per second.
// revalidate sets the conditional header from the first answer.
func checkins(b *testing.B, url string, n, workers int) float64 {
	b.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: workers}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	first, err := c.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, first.Body)
	first.Body.Close()
	etag, lm := first.Header.Get("ETag"), first.Header.Get("Last-Modified")
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				if etag != "" {
					req.Header.Set("If-None-Match", etag)
				} else {
					req.Header.Set("If-Modified-Since", lm)
				}
				resp, err := c.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusNotModified {
					errs <- fmt.Errorf("%s: %s, want 304", url, resp.Status)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkIdleCheckins: an idle host's check is a conditional GET of
// timestamp.json answered 304. The server's rate and a plain static file
// server's (net/http.FileServer over the same directory, If-Modified-Since)
// are measured in the same run, 16 concurrent clients each, on loopback;
// the ratio is server/plain.
func BenchmarkIdleCheckins(b *testing.B) {
	l := newLab(b, server.Options{})
	defer l.stop()
	plain := httptest.NewServer(http.FileServer(http.Dir(l.repo)))
	defer plain.Close()
	const workers = 16
	n := max(b.N, 2000)
	b.ResetTimer()
	ours := checkins(b, l.http.URL+"/metadata/timestamp.json", n, workers)
	base := checkins(b, plain.URL+"/metadata/timestamp.json", n, workers)
	b.StopTimer()
	b.ReportMetric(ours, "checkins/s")
	b.ReportMetric(base, "plain-checkins/s")
	b.ReportMetric(ours/base, "ratio")
}

// BenchmarkTelemetryIngest: signed batches of 500 events (each from its own
// admitted host), posted over loopback by 4 clients; every batch is
// verified, bounded, checked against the host's admission and last seq,
// applied and committed to server.db with fsync before it is acknowledged.
func BenchmarkTelemetryIngest(b *testing.B) {
	l := newLab(b, server.Options{BatchesPerHost: 1e9, BatchBurst: 1 << 20})
	defer l.stop()
	b.ResetTimer()
	rate := ingest(b, l, b.N)
	b.StopTimer()
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(rate/wire.MaxBatchEvents, "batches/s")
}

// BenchmarkTelemetryIngestPostgres is BenchmarkTelemetryIngest with the
// state in PostgreSQL (fleetpg, on a throwaway server of internal/pgtest on
// this machine, over a unix socket), and the same on server.db in the same
// run: events/s of each and the ratio postgres/bbolt. It skips where
// PostgreSQL is not installed.
func BenchmarkTelemetryIngestPostgres(b *testing.B) {
	dsn := pgtest.Start(b).NewDatabase(b)
	db, err := fleetpg.Open(context.Background(), dsn, fleetpg.Options{Timeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	pg := newLab(b, server.Options{BatchesPerHost: 1e9, BatchBurst: 1 << 20, Store: db})
	defer pg.stop()
	bolt := newLab(b, server.Options{BatchesPerHost: 1e9, BatchBurst: 1 << 20})
	defer bolt.stop()
	b.ResetTimer()
	ours := ingest(b, pg, b.N)
	base := ingest(b, bolt, b.N)
	b.StopTimer()
	b.ReportMetric(ours, "events/s")
	b.ReportMetric(base, "bbolt-events/s")
	b.ReportMetric(ours/base, "ratio")
}

// ingest admits n hosts on l, then posts one batch of wire.MaxBatchEvents
// events from each with 4 clients, and returns the events acknowledged per
// second. The set-up (keys, admission, signing) is not timed.
func ingest(b *testing.B, l *lab, n int) float64 {
	b.Helper()
	rate, _ := post(b, l, prepare(b, l, n, wire.MaxBatchEvents))
	return rate
}

// signed is a signed batch, ready to post.
type signed struct {
	body, sig []byte
	events    int
}

// prepare admits n hosts on l and makes a batch of events events (a
// heartbeat and events-1 more) from each, untimed.
func prepare(b *testing.B, l *lab, n, events int) []signed {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	reqs := make([]signed, n)
	for i := range reqs {
		h := newHost(b, "")
		l.admit(b, h)
		evs := make([]wire.Event, events-1) // batch adds a heartbeat
		for j := range evs {
			evs[j] = wire.Event{ID: fmt.Sprintf("b%d-e%d", i, j), Kind: wire.EventHeartbeat, Version: 1001, Time: time.Now().UTC()}
		}
		body, err := json.Marshal(h.batch(1001, evs...))
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = signed{body, []byte(wire.SignatureValue(h.id.Sign(body))), events}
	}
	return reqs
}

// post posts reqs to l with 4 clients, and returns the events acknowledged
// per second and when the first post was sent.
func post(b *testing.B, l *lab, reqs []signed) (float64, time.Time) {
	events := reqs[0].events
	b.Helper()
	const workers = 4
	tr := &http.Transport{MaxIdleConnsPerHost: workers}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(reqs); i += workers {
				r, _ := http.NewRequest(http.MethodPost, l.http.URL+wire.Path, bytes.NewReader(reqs[i].body))
				r.Header.Set(wire.SignatureHeader, string(reqs[i].sig))
				resp, err := c.Do(r)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("batch %d: %s", i, resp.Status)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(len(reqs)*events) / time.Since(start).Seconds(), start
}

// BenchmarkTelemetryIngestReplica is BenchmarkTelemetryIngestPostgres for
// replicas (serve --db, server/pgreplica), in two phases on one database:
//   - events/s: what one replica that does not lead takes. Replica A
//     leads and admits the hosts, then stops (it resigns); replica B,
//     which never runs for the lease, verifies each batch, looks its host
//     up and queues it in the inbox, acknowledging once that committed;
//   - applied-events/s: A leads again and applies the inbox (verify,
//     admission, the controller, one commit per 2000 batches that deletes
//     them), timed until the inbox is empty.
//
// The bbolt store in the same run is the baseline of the ratio (events/s
// over bbolt-events/s).
//
// batch=500 sends full batches (wire.MaxBatchEvents); batch=1 a heartbeat
// each, what an idle host sends every telemetry.interval: the cost per
// batch.
func BenchmarkTelemetryIngestReplica(b *testing.B) {
	for _, events := range []int{wire.MaxBatchEvents, 1} {
		b.Run(fmt.Sprintf("batch=%d", events), func(b *testing.B) { ingestReplica(b, events) })
	}
}

func ingestReplica(b *testing.B, events int) {
	dsn := pgtest.Start(b).NewDatabase(b)
	open := func(name string) *pgreplica.Replica {
		rep, err := pgreplica.Open(context.Background(), dsn, server.DefaultLeaseTTL)
		if err != nil {
			b.Fatal(err)
		}
		rep.SetName(name)
		return rep
	}
	repA := open("http://127.0.0.1:1/a")
	a := newLab(b, server.Options{BatchesPerHost: 1e9, BatchBurst: 1 << 20, Replication: repA})
	defer a.stop()
	run := func() context.CancelFunc {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = a.srv.Run(ctx, nil); close(done) }()
		for !a.srv.Leads() {
			runtime.Gosched() // Run takes the lease at once: none is held
		}
		return func() { cancel(); <-done }
	}
	stopA := run()
	replicaB := newLab(b, server.Options{BatchesPerHost: 1e9, BatchBurst: 1 << 20, Replication: open("http://127.0.0.1:1/b")})
	defer replicaB.stop()
	bolt := newLab(b, server.Options{BatchesPerHost: 1e9, BatchBurst: 1 << 20})
	defer bolt.stop()

	b.ResetTimer()
	reqs := prepare(b, a, b.N, events)
	stopA()
	ours, _ := post(b, replicaB, reqs)
	b.StopTimer()
	start := time.Now()
	stopA = run()
	defer stopA()
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for {
		n, err := repA.DB().InboxLen(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			break
		}
		<-poll.C
	}
	applied := time.Since(start)
	base, _ := post(b, bolt, prepare(b, bolt, b.N, events))
	b.ReportMetric(ours, "events/s")
	b.ReportMetric(ours/float64(events), "batches/s")
	b.ReportMetric(float64(b.N*events)/applied.Seconds(), "applied-events/s")
	b.ReportMetric(base, "bbolt-events/s")
	b.ReportMetric(ours/base, "ratio")
}

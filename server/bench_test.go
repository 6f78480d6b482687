package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ringfence/ringfence/fleetpg"
	"github.com/ringfence/ringfence/internal/pgtest"
	"github.com/ringfence/ringfence/server"
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
	b.StopTimer()
	type req struct{ body, sig []byte }
	reqs := make([]req, n)
	for i := range reqs {
		h := newHost(b, "")
		l.admit(b, h)
		evs := make([]wire.Event, wire.MaxBatchEvents-1) // batch adds a heartbeat
		for j := range evs {
			evs[j] = wire.Event{ID: fmt.Sprintf("b%d-e%d", i, j), Kind: wire.EventHeartbeat, Version: 1001, Time: time.Now().UTC()}
		}
		body, err := json.Marshal(h.batch(1001, evs...))
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = req{body, []byte(wire.SignatureValue(h.id.Sign(body)))}
	}
	const workers = 4
	tr := &http.Transport{MaxIdleConnsPerHost: workers}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	b.StartTimer()
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
	return float64(n*wire.MaxBatchEvents) / time.Since(start).Seconds()
}

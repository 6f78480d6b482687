package tuf_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/testtmp"
)

// BenchmarkIdleRefresh: a refresh when nothing changed costs the request for
// the next root version (404) and timestamp.json. Reports bytes and
// requests on the wire per refresh.
func BenchmarkIdleRefresh(b *testing.B) {
	f := newFixture(b)
	f.publish(291, 1001, channelFile(b, "good-ipc-1001"))
	c := f.client()
	require.NoError(b, c.Refresh(context.Background()))
	f.requests.Store(0)
	f.bytes.Store(0)
	for b.Loop() {
		if err := c.Refresh(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(f.bytes.Load())/float64(b.N), "wire-bytes/op")
	b.ReportMetric(float64(f.requests.Load())/float64(b.N), "requests/op")
}

// BenchmarkDownload1MiB: refresh + download + verify of a 1 MiB target from
// a loopback server, against a plain HTTP GET + SHA-256 of the same file in
// the same iterations (x-plain).
func BenchmarkDownload1MiB(b *testing.B) {
	f := newFixture(b)
	data := make([]byte, 1<<20)
	_, _ = rand.Read(data)
	_, err := f.repo.Publish(291, 7001, data)
	require.NoError(b, err)
	sum := sha256.Sum256(data)
	plainURL := fmt.Sprintf("%s/targets/channels/291/%x.7001.rfch", f.srv.URL, sum)
	var tufTime, plainTime time.Duration
	b.SetBytes(1 << 20)
	for b.Loop() {
		f.host = testtmp.Dir(b) // a host that has not seen it
		c := f.client()
		t0 := time.Now()
		if err := c.Refresh(context.Background()); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Download(context.Background(), "channels/291/7001.rfch"); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		resp, err := http.Get(plainURL)
		if err != nil {
			b.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, resp.Body); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if string(h.Sum(nil)) != string(sum[:]) {
			b.Fatal("plain GET: wrong bytes")
		}
		t2 := time.Now()
		tufTime += t1.Sub(t0)
		plainTime += t2.Sub(t1)
	}
	b.ReportMetric(float64(tufTime.Microseconds())/float64(b.N), "µs-tuf/op")
	b.ReportMetric(float64(plainTime.Microseconds())/float64(b.N), "µs-plain/op")
	b.ReportMetric(float64(tufTime)/float64(plainTime), "x-plain")
}

// BenchmarkRefresh10kTargets: a first refresh (a new host) of a repository
// whose content role lists 10,000 targets.
func BenchmarkRefresh10kTargets(b *testing.B) {
	f := newFixture(b)
	files := map[string][]byte{}
	for i := range 10_000 {
		files[fmt.Sprintf("%d", i)] = []byte(fmt.Sprintf("content %d", i))
	}
	require.NoError(b, f.repo.PublishMany(291, files, 1))
	for b.Loop() {
		b.StopTimer()
		f.host = testtmp.Dir(b)
		c := f.client()
		b.StartTimer()
		if err := c.Refresh(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	st, err := os.Stat(filepath.Join(f.host, "tuf", "content.json"))
	require.NoError(b, err)
	b.ReportMetric(float64(st.Size()), "content.json-bytes")
}

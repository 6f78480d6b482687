package telemetry_test

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/state"
	"github.com/ringfence/ringfence/telemetry"
)

func TestIdentity(t *testing.T) {
	dir := filepath.Join(testtmp.Dir(t), "identity")
	a, err := telemetry.LoadOrCreateIdentity(dir)
	require.NoError(t, err)
	fi, err := os.Stat(filepath.Join(dir, telemetry.KeyName))
	require.NoError(t, err)
	if unixPerms {
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	}
	b, err := telemetry.LoadOrCreateIdentity(dir)
	require.NoError(t, err)
	require.Equal(t, a.HostID(), b.HostID(), "the identity survives a restart")
	require.Regexp(t, `^h-[0-9a-f]{32}$`, a.HostID())

	require.NoError(t, os.WriteFile(filepath.Join(dir, telemetry.KeyName), []byte("garbage"), 0o600))
	_, err = telemetry.LoadOrCreateIdentity(dir)
	require.ErrorContains(t, err, "restore it from a backup", "a damaged key is never replaced silently")
}

// server is a telemetry endpoint on loopback that verifies every batch and
// answers with status codes from a script.
type server struct {
	*httptest.Server
	mu      sync.Mutex
	script  []int // status per request; 200 after it runs out
	accept  func(ids []string) []string
	batches []*telemetry.Batch
	errs    []error
}

func newServer(t *testing.T) *server {
	s := &server{accept: func(ids []string) []string { return ids }}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, telemetry.Path, r.URL.Path)
		body, _ := io.ReadAll(r.Body)
		b, err := telemetry.VerifyBatch(body, r.Header.Get(telemetry.SignatureHeader))
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			s.errs = append(s.errs, err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.batches = append(s.batches, b)
		if len(s.script) > 0 {
			code := s.script[0]
			s.script = s.script[1:]
			if code != http.StatusOK {
				http.Error(w, "scripted", code)
				return
			}
		}
		var ids []string
		for _, e := range b.Events {
			ids = append(ids, e.ID)
		}
		_ = json.NewEncoder(w).Encode(telemetry.Response{Accepted: s.accept(ids)})
	}))
	t.Cleanup(s.Close)
	return s
}

func outbox(t *testing.T, n int) *state.DB {
	t.Helper()
	db, err := state.Open(filepath.Join(testtmp.Dir(t), "state.db"), state.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	for i := range n {
		typ := "heartbeat"
		if i%3 == 0 {
			typ = "reverted"
		}
		_, err := db.Enqueue(state.OutboxEvent{Type: typ, Version: uint32(i)})
		require.NoError(t, err)
	}
	return db
}

func pending(t *testing.T, db *state.DB) int {
	t.Helper()
	evs, err := db.Pending(1 << 20)
	require.NoError(t, err)
	return len(evs)
}

func sender(t *testing.T, url string, now *time.Time) *telemetry.Sender {
	id, err := telemetry.LoadOrCreateIdentity(testtmp.Dir(t))
	require.NoError(t, err)
	return &telemetry.Sender{Endpoint: url, Identity: id, Clock: func() time.Time { return *now },
		Rand: rand.New(rand.NewPCG(1, 2)), Info: func() ([]string, map[string]uint32) { return []string{"lab"}, map[string]uint32{"291": 1001} }}
}

func TestFlushAtLeastOnce(t *testing.T) {
	srv := newServer(t)
	srv.script = []int{http.StatusInternalServerError}
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	s := sender(t, srv.URL, &now)
	db := outbox(t, 1200)

	n, err := s.Flush(context.Background(), db)
	require.Error(t, err)
	require.Zero(t, n)
	require.Equal(t, 1200, pending(t, db), "nothing is lost when the server fails")
	require.False(t, s.Due(now), "backing off")
	now = s.NextAttempt()
	require.True(t, s.Due(now))

	n, err = s.Flush(context.Background(), db)
	require.NoError(t, err)
	require.Equal(t, 1200, n)
	require.Zero(t, pending(t, db))
	require.Len(t, srv.batches, 4, "one failed, then batches of at most %d", telemetry.MaxBatchEvents)
	b := srv.batches[1]
	require.Equal(t, s.Identity.HostID(), b.HostID)
	require.Equal(t, []string{"lab"}, b.Tags)
	require.Equal(t, uint32(1001), b.Versions["291"])
	require.Empty(t, srv.errs)
}

func TestFlushPartialAck(t *testing.T) {
	srv := newServer(t)
	srv.accept = func(ids []string) []string { return ids[:len(ids)/2] }
	now := time.Now()
	s := sender(t, srv.URL, &now)
	db := outbox(t, 10)
	n, err := s.Flush(context.Background(), db)
	require.NoError(t, err)
	require.Equal(t, 5, n)
	require.Equal(t, 5, pending(t, db), "unacknowledged events are sent again")
	srv.accept = func(ids []string) []string { return ids }
	n, err = s.Flush(context.Background(), db)
	require.NoError(t, err)
	require.Equal(t, 5, n)
	require.Zero(t, pending(t, db))
}

func TestFlushRejectedBacksOff(t *testing.T) {
	srv := newServer(t)
	srv.script = []int{http.StatusBadRequest, http.StatusBadRequest, http.StatusBadRequest, http.StatusBadRequest}
	now := time.Now()
	s := sender(t, srv.URL, &now)
	s.MinBackoff, s.MaxBackoff = time.Second, 5*time.Second
	db := outbox(t, 3)
	var waits []time.Duration
	for range 4 {
		_, err := s.Flush(context.Background(), db)
		require.ErrorIs(t, err, telemetry.ErrRejected)
		waits = append(waits, s.NextAttempt().Sub(now))
		now = s.NextAttempt()
	}
	require.Equal(t, 3, pending(t, db), "a 4xx keeps the events")
	for i, w := range waits {
		bound := min(time.Second<<i, 5*time.Second)
		require.True(t, w > 0 && w <= bound, "wait %d: %v not in (0, %v]", i, w, bound)
	}
}

func TestVerifyBatchRefuses(t *testing.T) {
	srv := newServer(t)
	now := time.Now()
	s := sender(t, srv.URL, &now)
	other := sender(t, srv.URL, &now)
	// Capture a real signed body by pointing the sender at a recorder.
	var body []byte
	var sig string
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
		sig = r.Header.Get(telemetry.SignatureHeader)
		_ = json.NewEncoder(w).Encode(telemetry.Response{})
	}))
	defer rec.Close()
	s.Endpoint = rec.URL
	_, _ = s.Flush(context.Background(), outbox(t, 2))
	_, err := telemetry.VerifyBatch(body, sig)
	require.NoError(t, err)

	tampered := append([]byte(nil), body...)
	tampered[len(tampered)/2] ^= 1
	_, err = telemetry.VerifyBatch(tampered, sig)
	require.Error(t, err)
	_, err = telemetry.VerifyBatch(body, telemetry.SignatureValue(other.Identity.Sign(body)))
	require.ErrorIs(t, err, telemetry.ErrBadSignature, "signed by another host's key")

	var b map[string]any
	require.NoError(t, json.Unmarshal(body, &b))
	b["host_id"] = other.Identity.HostID()
	forged, _ := json.Marshal(b)
	_, err = telemetry.VerifyBatch(forged, telemetry.SignatureValue(s.Identity.Sign(forged)))
	require.ErrorIs(t, err, telemetry.ErrBadSignature, "host id of another key")
	b["host_id"], b["extra"] = s.Identity.HostID(), 1
	forged, _ = json.Marshal(b)
	_, err = telemetry.VerifyBatch(forged, telemetry.SignatureValue(s.Identity.Sign(forged)))
	require.ErrorIs(t, err, telemetry.ErrMalformed)
	_, err = telemetry.VerifyBatch(make([]byte, telemetry.MaxBody+1), sig)
	require.ErrorIs(t, err, telemetry.ErrTooLarge)
}

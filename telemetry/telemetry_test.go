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

	"github.com/ringfence/ringfence/hostdb"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/testperm"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/telemetry"
	"github.com/ringfence/ringfence/wire"
)

func TestIdentity(t *testing.T) {
	dir := filepath.Join(testtmp.Dir(t), "identity")
	a, err := telemetry.LoadOrCreateIdentity(dir)
	require.NoError(t, err)
	fi, err := os.Stat(filepath.Join(dir, telemetry.KeyName))
	require.NoError(t, err)
	if testperm.Meaningful {
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
	batches []*wire.Batch
	errs    []error
}

func newServer(t *testing.T) *server {
	s := &server{accept: func(ids []string) []string { return ids }}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, wire.Path, r.URL.Path)
		body, _ := io.ReadAll(r.Body)
		b, err := wire.VerifyBatch(body, r.Header.Get(wire.SignatureHeader))
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
		_ = json.NewEncoder(w).Encode(wire.Response{Accepted: s.accept(ids), Admission: wire.AdmissionAccepted})
	}))
	t.Cleanup(s.Close)
	return s
}

func outbox(t *testing.T, n int) *hostdb.DB {
	t.Helper()
	db, err := hostdb.Open(filepath.Join(testtmp.Dir(t), "state.db"), hostdb.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	for i := range n {
		kind := wire.EventHeartbeat
		if i%3 == 0 {
			kind = wire.EventReverted
		}
		_, err := db.Enqueue(wire.Event{Kind: kind, Version: uint32(i)})
		require.NoError(t, err)
	}
	return db
}

func pending(t *testing.T, db *hostdb.DB) int {
	t.Helper()
	evs, err := db.Pending(1 << 20)
	require.NoError(t, err)
	return len(evs)
}

func sender(t *testing.T, url string, clk *clock.Fake) *telemetry.Sender {
	id, err := telemetry.LoadOrCreateIdentity(testtmp.Dir(t))
	require.NoError(t, err)
	return &telemetry.Sender{Endpoint: url, Identity: id, Clock: clk,
		Rand: rand.New(rand.NewPCG(1, 2)), Info: func() wire.HostInfo {
			return wire.HostInfo{Tags: []string{"lab"}, Versions: map[string]uint32{"291": 1001}, Sensor: "7.12"}
		}}
}

func TestFlushAtLeastOnce(t *testing.T) {
	srv := newServer(t)
	srv.script = []int{http.StatusInternalServerError}
	clk := clock.NewFake(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))
	s := sender(t, srv.URL, clk)
	db := outbox(t, 1200)

	n, err := s.Flush(context.Background(), db)
	require.Error(t, err)
	require.Zero(t, n)
	require.Equal(t, 1200, pending(t, db), "nothing is lost when the server fails")
	require.False(t, s.Due(clk.Now()), "backing off")
	clk.Set(s.NextAttempt())
	require.True(t, s.Due(clk.Now()))

	n, err = s.Flush(context.Background(), db)
	require.NoError(t, err)
	require.Equal(t, 1200, n)
	require.Zero(t, pending(t, db))
	require.Len(t, srv.batches, 4, "one failed, then batches of at most %d", wire.MaxBatchEvents)
	b := srv.batches[1]
	require.Equal(t, s.Identity.HostID(), b.HostID)
	require.Equal(t, []string{"lab"}, b.Tags)
	require.Equal(t, uint32(1001), b.Versions["291"])
	require.Empty(t, srv.errs)
}

func TestFlushPartialAck(t *testing.T) {
	srv := newServer(t)
	srv.accept = func(ids []string) []string { return ids[:len(ids)/2] }
	clk := clock.NewFake(time.Now())
	s := sender(t, srv.URL, clk)
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
	clk := clock.NewFake(time.Now())
	s := sender(t, srv.URL, clk)
	s.MinBackoff, s.MaxBackoff = time.Second, 5*time.Second
	db := outbox(t, 3)
	var waits []time.Duration
	for range 4 {
		_, err := s.Flush(context.Background(), db)
		require.ErrorIs(t, err, telemetry.ErrRejected)
		waits = append(waits, s.NextAttempt().Sub(clk.Now()))
		clk.Set(s.NextAttempt())
	}
	require.Equal(t, 3, pending(t, db), "a 4xx keeps the events")
	for i, w := range waits {
		bound := min(time.Second<<i, 5*time.Second)
		require.True(t, w > 0 && w <= bound, "wait %d: %v not in (0, %v]", i, w, bound)
	}
}

func TestVerifyBatchRefuses(t *testing.T) {
	srv := newServer(t)
	clk := clock.NewFake(time.Now())
	s := sender(t, srv.URL, clk)
	other := sender(t, srv.URL, clk)
	// Capture a real signed body by pointing the sender at a recorder.
	var body []byte
	var sig string
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
		sig = r.Header.Get(wire.SignatureHeader)
		_ = json.NewEncoder(w).Encode(wire.Response{})
	}))
	defer rec.Close()
	s.Endpoint = rec.URL
	_, _ = s.Flush(context.Background(), outbox(t, 2))
	_, err := wire.VerifyBatch(body, sig)
	require.NoError(t, err)

	tampered := append([]byte(nil), body...)
	tampered[len(tampered)/2] ^= 1
	_, err = wire.VerifyBatch(tampered, sig)
	require.Error(t, err)
	_, err = wire.VerifyBatch(body, wire.SignatureValue(other.Identity.Sign(body)))
	require.ErrorIs(t, err, wire.ErrBadSignature, "signed by another host's key")

	var b map[string]any
	require.NoError(t, json.Unmarshal(body, &b))
	b["host_id"] = other.Identity.HostID()
	forged, _ := json.Marshal(b)
	_, err = wire.VerifyBatch(forged, wire.SignatureValue(s.Identity.Sign(forged)))
	require.ErrorIs(t, err, wire.ErrBadSignature, "host id of another key")
	b["host_id"], b["extra"] = s.Identity.HostID(), 1
	forged, _ = json.Marshal(b)
	_, err = wire.VerifyBatch(forged, wire.SignatureValue(s.Identity.Sign(forged)))
	require.ErrorIs(t, err, wire.ErrMalformed)
	_, err = wire.VerifyBatch(make([]byte, wire.MaxBody+1), sig)
	require.ErrorIs(t, err, wire.ErrTooLarge)
}

// TestEventsCarryARisingSeq: every batch's events carry the outbox's seq,
// rising, so the server can tell a replay.
func TestEventsCarryARisingSeq(t *testing.T) {
	srv := newServer(t)
	clk := clock.NewFake(time.Now())
	s := sender(t, srv.URL, clk)
	db := outbox(t, 700)
	_, err := s.Flush(context.Background(), db)
	require.NoError(t, err)
	var last uint64
	for _, b := range srv.batches {
		for _, e := range b.Events {
			require.Greater(t, e.Seq, last)
			last = e.Seq
		}
	}
	// A new outbox (state.db lost) starts above the old one's numbers.
	db2 := outbox(t, 1)
	evs, err := db2.Pending(1)
	require.NoError(t, err)
	require.Greater(t, evs[0].Seq, last)
}

// admissionServer answers like ringfence-server for a host that is not
// admitted until accept is set: 403 pending with a Retry-After, then 200.
type admissionServer struct {
	*httptest.Server
	mu      sync.Mutex
	accept  bool
	state   wire.Admission
	tokens  []string
	retryIn string
}

func newAdmissionServer(t *testing.T) *admissionServer {
	a := &admissionServer{state: wire.AdmissionPending, retryIn: "60"}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b, err := wire.VerifyBatch(body, r.Header.Get(wire.SignatureHeader))
		require.NoError(t, err)
		a.mu.Lock()
		defer a.mu.Unlock()
		a.tokens = append(a.tokens, b.EnrolmentToken)
		if !a.accept {
			w.Header().Set("Retry-After", a.retryIn)
			w.WriteHeader(http.StatusForbidden)
			_ = json.NewEncoder(w).Encode(wire.Refusal{Error: "host is " + string(a.state), Admission: a.state})
			return
		}
		var ids []string
		for _, e := range b.Events {
			ids = append(ids, e.ID)
		}
		_ = json.NewEncoder(w).Encode(wire.Response{Accepted: ids, Admission: wire.AdmissionAccepted, Applied: len(ids)})
	}))
	t.Cleanup(a.Close)
	return a
}

// TestNotAdmitted: a pending host keeps its events, tries again when the
// server says (bounded), sends its enrolment token until it is admitted,
// and says where it stands; a rejected one backs off.
func TestNotAdmitted(t *testing.T) {
	srv := newAdmissionServer(t)
	clk := clock.NewFake(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))
	s := sender(t, srv.URL, clk)
	s.EnrolmentToken = "rft_abc_secret"
	db := outbox(t, 5)

	_, err := s.Flush(context.Background(), db)
	require.ErrorIs(t, err, telemetry.ErrNotAdmitted)
	require.Equal(t, wire.AdmissionPending, s.Admission())
	require.Equal(t, 5, pending(t, db), "a pending host's events wait in its outbox")
	require.Equal(t, clk.Now().Add(time.Minute), s.NextAttempt(), "it tries again when the server says")

	srv.retryIn = "86400"
	clk.Set(s.NextAttempt())
	_, err = s.Flush(context.Background(), db)
	require.ErrorIs(t, err, telemetry.ErrNotAdmitted)
	require.Equal(t, clk.Now().Add(telemetry.MaxPendingWait), s.NextAttempt(), "however long the server says, at most MaxPendingWait")

	srv.accept = true
	clk.Set(s.NextAttempt())
	n, err := s.Flush(context.Background(), db)
	require.NoError(t, err)
	require.Equal(t, 5, n)
	require.Equal(t, wire.AdmissionAccepted, s.Admission())
	_, _ = db.Enqueue(wire.Event{Kind: wire.EventHeartbeat})
	_, err = s.Flush(context.Background(), db)
	require.NoError(t, err)
	require.Equal(t, []string{"rft_abc_secret", "rft_abc_secret", "rft_abc_secret", ""}, srv.tokens,
		"the token goes with every batch until the host is admitted, then no more")

	srv.accept, srv.state = false, wire.AdmissionDecommissioned
	_, _ = db.Enqueue(wire.Event{Kind: wire.EventHeartbeat})
	_, err = s.Flush(context.Background(), db)
	require.ErrorIs(t, err, telemetry.ErrNotAdmitted)
	require.Equal(t, wire.AdmissionDecommissioned, s.Admission())
	require.True(t, s.NextAttempt().After(clk.Now()), "a refused host backs off")
}

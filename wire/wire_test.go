package wire_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/wire"
)

var key = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))

// signed returns a batch's body and signature header from a host key.
func signed(t testing.TB, b wire.Batch) ([]byte, string) {
	t.Helper()
	pub := key.Public().(ed25519.PublicKey)
	b.Format, b.HostID, b.PublicKey = wire.Format, wire.HostIDOf(pub), base64.StdEncoding.EncodeToString(pub)
	body, err := json.Marshal(b)
	require.NoError(t, err)
	return body, wire.SignatureValue(ed25519.Sign(key, body))
}

func event(mut func(*wire.Event)) wire.Batch {
	e := wire.Event{ID: "e1", Seq: 1, Kind: wire.EventHeartbeat, Time: time.Unix(0, 0).UTC()}
	mut(&e)
	return wire.Batch{Events: []wire.Event{e}}
}

// TestVerifyBatchBounds: every field a host sends has a bound, and a batch
// beyond one is refused whole, naming it.
func TestVerifyBatchBounds(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	for _, tc := range []struct {
		name  string
		batch wire.Batch
		err   error
		want  string
	}{
		{"ok", event(func(*wire.Event) {}), nil, ""},
		{"id", event(func(e *wire.Event) { e.ID = long(wire.MaxIDLen + 1) }), wire.ErrMalformed, "event id of 65 bytes"},
		{"no seq", event(func(e *wire.Event) { e.Seq = 0 }), wire.ErrMalformed, "no seq"},
		{"kind", event(func(e *wire.Event) { e.Kind = wire.EventKind(long(wire.MaxKindLen + 1)) }), wire.ErrMalformed, "type of"},
		{"reason", event(func(e *wire.Event) { e.Reason = long(wire.MaxReasonLen + 1) }), wire.ErrMalformed, "reason of"},
		{"codes", event(func(e *wire.Event) { e.Codes = make([]string, wire.MaxCodes+1) }), wire.ErrMalformed, "codes"},
		{"code", event(func(e *wire.Event) { e.Codes = []string{long(wire.MaxCodeLen + 1)} }), wire.ErrMalformed, "a code of"},
		{"evidence value", event(func(e *wire.Event) { e.Evidence = map[string]string{"k": long(wire.MaxEvidenceVal + 1)} }), wire.ErrMalformed, "evidence"},
		{"tags", wire.Batch{HostInfo: wire.HostInfo{Tags: make([]string, wire.MaxTags+1)}}, wire.ErrTooLarge, "tags"},
		{"tag", wire.Batch{HostInfo: wire.HostInfo{Tags: []string{long(wire.MaxTagLen + 1)}}}, wire.ErrTooLarge, "a tag of"},
		{"versions", wire.Batch{HostInfo: wire.HostInfo{Versions: manyVersions(wire.MaxVersions + 1)}}, wire.ErrTooLarge, "channels in versions"},
		{"channel", wire.Batch{HostInfo: wire.HostInfo{Versions: map[string]uint32{"x": 1}}}, wire.ErrMalformed, "not a number"},
		{"sensor", wire.Batch{HostInfo: wire.HostInfo{Sensor: "7.12; rm -rf"}}, wire.ErrMalformed, "only letters"},
		{"sensor length", wire.Batch{HostInfo: wire.HostInfo{Sensor: long(65)}}, wire.ErrMalformed, "1 to 64 bytes"},
		{"manifest", wire.Batch{HostInfo: wire.HostInfo{Manifest: "ABCD"}}, wire.ErrMalformed, "not a SHA-256"},
		{"token", wire.Batch{EnrolmentToken: long(wire.MaxTokenLen + 1)}, wire.ErrTooLarge, "enrolment token of"},
		{"events", wire.Batch{Events: make([]wire.Event, wire.MaxBatchEvents+1)}, wire.ErrTooLarge, "events"},
		{"health", withHealth(wire.Health{Seconds: 60, CPU: 0.02, RSS: 16 << 20, Events: 12000, LatencyMicros: 41.5}), nil, ""},
		{"health window", withHealth(wire.Health{Seconds: wire.MaxHealthWindow + 1}), wire.ErrMalformed, "health: a window of 86401 seconds"},
		{"health cpu", withHealth(wire.Health{Seconds: 60, CPU: -0.5}), wire.ErrMalformed, "health: cpu -0.5"},
		{"health latency", withHealth(wire.Health{Seconds: 60, LatencyMicros: wire.MaxHealthLatency * 2}), wire.ErrMalformed, "health: latency"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, sig := signed(t, tc.batch)
			_, err := wire.VerifyBatch(body, sig)
			if tc.err == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.err)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func withHealth(h wire.Health) wire.Batch {
	b := event(func(*wire.Event) {})
	b.Health = &h
	return b
}

// TestHealthCheck: a health sample is refused outside its bounds, NaN and
// the infinities included (which JSON cannot carry, but a sender's own
// check must not let through), and taken at them.
func TestHealthCheck(t *testing.T) {
	ok := wire.Health{Seconds: 60, CPU: 0.25, RSS: 1 << 30, Events: 1e6, LatencyMicros: 120}
	nan, inf := math.NaN(), math.Inf(1)
	for _, tc := range []struct {
		name string
		mut  func(*wire.Health)
		want string // "" for accepted
	}{
		{"ok", func(*wire.Health) {}, ""},
		{"at every bound", func(h *wire.Health) {
			h.Seconds, h.CPU, h.LatencyMicros, h.RSS, h.Events = wire.MaxHealthWindow, wire.MaxHealthCPU, wire.MaxHealthLatency, math.MaxUint64, math.MaxUint64
		}, ""},
		{"idle", func(h *wire.Health) { h.CPU, h.Events, h.LatencyMicros = 0, 0, 0 }, ""},
		{"a short window", func(h *wire.Health) { h.Seconds = 0.001 }, ""},
		{"no window", func(h *wire.Health) { h.Seconds = 0 }, "a window of 0 seconds"},
		{"negative window", func(h *wire.Health) { h.Seconds = -1 }, "a window of -1 seconds"},
		{"NaN window", func(h *wire.Health) { h.Seconds = nan }, "a window of NaN"},
		{"infinite window", func(h *wire.Health) { h.Seconds = inf }, "a window of +Inf"},
		{"too long a window", func(h *wire.Health) { h.Seconds = wire.MaxHealthWindow + 0.5 }, "at most 86400"},
		{"negative cpu", func(h *wire.Health) { h.CPU = -0.01 }, "cpu -0.01"},
		{"NaN cpu", func(h *wire.Health) { h.CPU = nan }, "cpu NaN"},
		{"infinite cpu", func(h *wire.Health) { h.CPU = inf }, "cpu +Inf"},
		{"minus infinite cpu", func(h *wire.Health) { h.CPU = -inf }, "cpu -Inf"},
		{"too much cpu", func(h *wire.Health) { h.CPU = wire.MaxHealthCPU + 1 }, "want 0..1024 cores"},
		{"negative latency", func(h *wire.Health) { h.LatencyMicros = -1 }, "latency -1"},
		{"NaN latency", func(h *wire.Health) { h.LatencyMicros = nan }, "latency NaN"},
		{"infinite latency", func(h *wire.Health) { h.LatencyMicros = inf }, "latency +Inf"},
		{"too much latency", func(h *wire.Health) { h.LatencyMicros = wire.MaxHealthLatency + 1 }, "want 0..3.6e+09"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := ok
			tc.mut(&h)
			err := h.Check()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, "health: ")
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestHealthOutOfRangeJSON: a number JSON can write but a float64 cannot
// hold is a malformed batch, not an infinite figure.
func TestHealthOutOfRangeJSON(t *testing.T) {
	body := []byte(`{"format":"ringfence-telemetry/v2","health":{"seconds":60,"cpu":1e999,"rss":1,"events":1,"latency_us":1},"events":[]}`)
	_, err := wire.VerifyBatch(body, wire.SignatureValue(ed25519.Sign(key, body)))
	require.ErrorIs(t, err, wire.ErrMalformed)
	body = []byte(`{"format":"ringfence-telemetry/v2","health":{"seconds":60,"cpu":0,"rss":-1,"events":1,"latency_us":1},"events":[]}`)
	_, err = wire.VerifyBatch(body, wire.SignatureValue(ed25519.Sign(key, body)))
	require.ErrorIs(t, err, wire.ErrMalformed, "memory is never negative")
}

func manyVersions(n int) map[string]uint32 {
	m := map[string]uint32{}
	for i := range n {
		m[string(rune('0'+i%10))+strings.Repeat("1", i/10)] = 1
	}
	return m
}

// TestBoundMakesAnyEventAcceptable: what a host's outbox queues (cut by
// Bound) is never refused by the server for its size.
func TestBoundMakesAnyEventAcceptable(t *testing.T) {
	long := strings.Repeat("é", 5000)
	e := wire.Event{ID: long, Seq: 1, Kind: wire.EventKind(long), Reason: long, Codes: make([]string, 200), Evidence: map[string]string{}}
	for i := range 100 {
		e.Codes[i] = long
		e.Evidence[long+string(rune('a'+i%26))+strings.Repeat("z", i)] = long
	}
	b := e.Bound()
	require.LessOrEqual(t, len(b.Codes), wire.MaxCodes)
	require.LessOrEqual(t, len(b.Evidence), wire.MaxEvidence)
	body, sig := signed(t, wire.Batch{Events: []wire.Event{b}})
	_, err := wire.VerifyBatch(body, sig)
	require.NoError(t, err)
}

// FuzzVerifyBatch: no body panics the check, and an accepted batch is
// within every bound.
func FuzzVerifyBatch(f *testing.F) {
	body, _ := signed(f, event(func(*wire.Event) {}))
	f.Add(body)
	f.Add([]byte(`{"format":"ringfence-telemetry/v2","events":[{"id":"a","seq":1,"type":"x"}],"versions":{"291":3}}`))
	f.Add([]byte(`{"format":"ringfence-telemetry/v2","events":[],"health":{"seconds":60,"cpu":0.5,"rss":1,"events":2,"latency_us":3}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Sign whatever it is, so the fuzzer reaches past the signature.
		b, err := wire.VerifyBatch(data, wire.SignatureValue(ed25519.Sign(key, data)))
		if err != nil {
			return
		}
		require.LessOrEqual(t, len(b.Events), wire.MaxBatchEvents)
		require.LessOrEqual(t, len(b.Tags), wire.MaxTags)
		require.LessOrEqual(t, len(b.Versions), wire.MaxVersions)
		if b.Health != nil {
			require.NoError(t, b.Health.Check())
		}
		for _, e := range b.Events {
			require.NotZero(t, e.Seq)
			require.LessOrEqual(t, len(e.ID), wire.MaxIDLen)
			require.LessOrEqual(t, len(e.Reason), wire.MaxReasonLen)
		}
		_, err = b.Channels()
		require.NoError(t, err)
	})
}

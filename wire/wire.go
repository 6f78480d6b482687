// Package wire is the contract between hosts and ringfence-server, and its
// only owner: the telemetry batch a host signs and posts, the events in it
// (typed kinds), the server's answer, the host's admission states, and the
// bound on every field a host sends. Both sides import it; it imports
// nothing of either (tailscale's tailcfg plays this part there).
//
// Wire format v2 (docs/telemetry.md): POST <endpoint>/v1/telemetry with a
// JSON Batch as the body and the host's ed25519 signature over the exact
// body bytes in the SignatureHeader. v2 differs from v1 by the per-host
// event sequence (replay protection), the enrolment token, and tags that
// are only a request: membership is the server's record.
package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ringfence/ringfence/compat"
)

// The request.
const (
	Format          = "ringfence-telemetry/v2"
	Path            = "/v1/telemetry"
	SignatureHeader = "Ringfence-Signature"
)

// Bounds of what a host sends (docs/telemetry.md names each). A batch
// beyond one is refused whole (400/413): a host's own outbox cuts its
// events to them (Event.Bound), so only a broken or hostile sender meets
// the refusal.
const (
	MaxBody        = 1 << 20 // bytes of one batch
	MaxBatchEvents = 500     // events in one batch
	MaxIDLen       = 64      // bytes of an event id
	MaxKindLen     = 32      // bytes of an event type
	MaxReasonLen   = 1024    // bytes of a reason
	MaxCodes       = 64      // codes per event
	MaxCodeLen     = 64      // bytes of a code
	MaxEvidence    = 32      // evidence entries per event
	MaxEvidenceKey = 64      // bytes of an evidence key
	MaxEvidenceVal = 1024    // bytes of an evidence value
	MaxTags        = 16      // requested tags per batch
	MaxTagLen      = 64      // bytes of a tag
	MaxVersions    = 64      // channels in a batch's versions
	MaxTokenLen    = 128     // bytes of an enrolment token
)

// Sentinel errors of VerifyBatch.
var (
	ErrMalformed    = errors.New("wire: malformed batch")
	ErrTooLarge     = errors.New("wire: batch too large")
	ErrBadSignature = errors.New("wire: bad signature")
)

// EventKind is an event's type.
type EventKind string

// The event kinds hosts send (docs/telemetry.md says when).
const (
	EventInstalled          EventKind = "installed"
	EventTrialStarted       EventKind = "trial-started"
	EventHealthy            EventKind = "healthy"
	EventReverted           EventKind = "reverted"
	EventQuarantined        EventKind = "quarantined"
	EventRecoveredOffline   EventKind = "recovered-offline"
	EventRejectedValidation EventKind = "rejected-validation"
	EventRejectedPreflight  EventKind = "rejected-preflight"
	EventSensorCrashed      EventKind = "sensor-crashed"
	EventFetchFailed        EventKind = "fetch-failed"
	EventHeartbeat          EventKind = "heartbeat"
	EventBinaryUpdated      EventKind = "binary-updated"
	// EventIncompatible: the host refused a version whose signed
	// compatibility constraint excludes its installed sensor. The gate
	// does not count it against the content: the content never ran there.
	EventIncompatible EventKind = "incompatible"
)

// Kinds lists every kind, in the order of the table in docs/telemetry.md.
var Kinds = []EventKind{EventInstalled, EventTrialStarted, EventHealthy, EventReverted, EventQuarantined,
	EventRecoveredOffline, EventRejectedValidation, EventRejectedPreflight, EventSensorCrashed,
	EventFetchFailed, EventHeartbeat, EventBinaryUpdated, EventIncompatible}

func (k EventKind) String() string { return string(k) }

// Known reports whether k is one of Kinds (a newer host may send others;
// the server keeps them out of its metrics' labels).
func (k EventKind) Known() bool {
	for _, x := range Kinds {
		if x == k {
			return true
		}
	}
	return false
}

// Event is one event on the wire and in the host's outbox.
type Event struct {
	// ID is the event's idempotency key (the host acknowledges by it).
	ID string `json:"id"`
	// Seq orders the host's events: it only grows, across restarts and
	// a lost state.db alike (the outbox draws it from the clock). The
	// server applies an event only when its Seq is above every Seq it has
	// applied from that host, so a replayed batch has no effect.
	Seq      uint64            `json:"seq"`
	Kind     EventKind         `json:"type"`
	Time     time.Time         `json:"time"`
	Channel  uint32            `json:"channel,omitempty"`
	Version  uint32            `json:"version,omitempty"`
	Reason   string            `json:"reason,omitempty"`
	Codes    []string          `json:"codes,omitempty"`
	Evidence map[string]string `json:"evidence,omitempty"`
	// Critical events (reverts) are never evicted from the host's outbox.
	Critical bool `json:"critical,omitempty"`
}

// Bound cuts e's free text to the bounds (at rune boundaries), so that an
// event the host queued is one the server takes.
func (e Event) Bound() Event {
	e.ID, e.Reason = Cut(e.ID, MaxIDLen), Cut(e.Reason, MaxReasonLen)
	e.Kind = EventKind(Cut(string(e.Kind), MaxKindLen))
	if len(e.Codes) > 0 {
		codes := make([]string, 0, min(len(e.Codes), MaxCodes))
		for i, c := range e.Codes {
			if i == MaxCodes-1 && len(e.Codes) > MaxCodes {
				codes = append(codes, "...")
				break
			}
			codes = append(codes, Cut(c, MaxCodeLen))
		}
		e.Codes = codes
	}
	if len(e.Evidence) > 0 {
		ev := make(map[string]string, min(len(e.Evidence), MaxEvidence))
		for k, v := range e.Evidence {
			if len(ev) == MaxEvidence-1 && len(e.Evidence) > MaxEvidence {
				ev["truncated"] = "more evidence was dropped"
				break
			}
			ev[Cut(k, MaxEvidenceKey)] = Cut(v, MaxEvidenceVal)
		}
		e.Evidence = ev
	}
	return e
}

// check reports the first bound e breaks.
func (e Event) check() error {
	switch {
	case e.ID == "" || e.Kind == "":
		return errors.New("an event without id or type")
	case e.Seq == 0:
		return fmt.Errorf("event %.64q has no seq", e.ID)
	case len(e.ID) > MaxIDLen:
		return fmt.Errorf("an event id of %d bytes; the limit is %d", len(e.ID), MaxIDLen)
	case len(e.Kind) > MaxKindLen:
		return fmt.Errorf("event %q: a type of %d bytes; the limit is %d", e.ID, len(e.Kind), MaxKindLen)
	case len(e.Reason) > MaxReasonLen:
		return fmt.Errorf("event %q: a reason of %d bytes; the limit is %d", e.ID, len(e.Reason), MaxReasonLen)
	case len(e.Codes) > MaxCodes:
		return fmt.Errorf("event %q: %d codes; the limit is %d", e.ID, len(e.Codes), MaxCodes)
	case len(e.Evidence) > MaxEvidence:
		return fmt.Errorf("event %q: %d evidence entries; the limit is %d", e.ID, len(e.Evidence), MaxEvidence)
	}
	for _, c := range e.Codes {
		if len(c) > MaxCodeLen {
			return fmt.Errorf("event %q: a code of %d bytes; the limit is %d", e.ID, len(c), MaxCodeLen)
		}
	}
	for k, v := range e.Evidence {
		if len(k) > MaxEvidenceKey || len(v) > MaxEvidenceVal {
			return fmt.Errorf("event %q: evidence %.64q: key or value over %d/%d bytes", e.ID, k, MaxEvidenceKey, MaxEvidenceVal)
		}
	}
	return nil
}

// Batch is one POST's body.
type Batch struct {
	Format    string    `json:"format"`
	HostID    string    `json:"host_id"`
	PublicKey string    `json:"public_key"` // base64 (std) ed25519
	SentAt    time.Time `json:"sent_at"`
	// EnrolmentToken is sent until the server answers that the host is
	// admitted: a token the vendor issued admits the host at once, with
	// the fleet and tags the token carries.
	EnrolmentToken string `json:"enrolment_token,omitempty"`
	HostInfo
	Events []Event `json:"events"`
}

// HostInfo is what every batch says of the host as it is now; each batch
// replaces the last one's.
type HostInfo struct {
	// Tags are the tags the host asks for (its configuration's). They are
	// shown to the operator who admits it, and count for nothing: a
	// host's membership is what the server records.
	Tags []string `json:"tags,omitempty"`
	// Versions maps a channel (decimal) to the version the host runs now
	// (0: no content yet).
	Versions map[string]uint32 `json:"versions,omitempty"`
	// Sensor is the installed sensor's version, as its capability manifest
	// says ("": an older host); Manifest is the SHA-256 (hex) of that
	// manifest, so that two hosts whose manifests say the same version but
	// differ can be told apart.
	Sensor   string `json:"sensor,omitempty"`
	Manifest string `json:"manifest,omitempty"`
	// Health is the agent's health over the last window, measured while
	// the host ran the batch's Versions (the window restarts when its
	// content changes); nil from a host that does not measure it.
	Health *Health `json:"health,omitempty"`
}

// Health is what the agent cost and did over one window, all of it on one
// set of content versions. The server compares the hosts on a rollout's
// new version with the controls by these figures (docs/gate.md).
type Health struct {
	// Seconds is the window's length (0 < Seconds <= MaxHealthWindow).
	Seconds float64 `json:"seconds"`
	// CPU is the agent's CPU time over the window per second of it (1 is
	// one core busy all the time).
	CPU float64 `json:"cpu"`
	// RSS is the agent's resident memory at the end of the window, bytes.
	RSS uint64 `json:"rss"`
	// Events is how many events the agent's sensor processed in the
	// window: a sensor that runs but sees nothing shows as none.
	Events uint64 `json:"events"`
	// LatencyMicros is the 99th percentile of the time the sensor took
	// over one event in the window, microseconds (0 with no events).
	LatencyMicros float64 `json:"latency_us"`
}

// Bounds of a Health sample.
const (
	MaxHealthWindow  = 86400 // seconds
	MaxHealthCPU     = 1024  // cores
	MaxHealthLatency = 3.6e9 // microseconds: an hour
)

// Check reports the first bound h breaks: a sample outside them is a
// broken or hostile sender's, and the batch is refused.
func (h *Health) Check() error {
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	switch {
	case !finite(h.Seconds) || h.Seconds <= 0 || h.Seconds > MaxHealthWindow:
		return fmt.Errorf("health: a window of %v seconds; want more than 0 and at most %d", h.Seconds, MaxHealthWindow)
	case !finite(h.CPU) || h.CPU < 0 || h.CPU > MaxHealthCPU:
		return fmt.Errorf("health: cpu %v; want 0..%d cores", h.CPU, MaxHealthCPU)
	case !finite(h.LatencyMicros) || h.LatencyMicros < 0 || h.LatencyMicros > MaxHealthLatency:
		return fmt.Errorf("health: latency %v µs; want 0..%g", h.LatencyMicros, float64(MaxHealthLatency))
	}
	return nil
}

// Channels returns Versions with numeric channels.
func (b *Batch) Channels() (map[uint32]uint32, error) {
	if len(b.Versions) == 0 {
		return nil, nil
	}
	out := make(map[uint32]uint32, len(b.Versions))
	for k, v := range b.Versions {
		ch, err := strconv.ParseUint(k, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: versions: channel %.20q is not a number", ErrMalformed, k)
		}
		out[uint32(ch)] = v
	}
	return out, nil
}

// Admission is a host's standing with the server.
type Admission string

// Admission states (docs/server.md, "Admitting hosts").
const (
	// AdmissionPending: the server has seen the key, and nothing it sends
	// counts until an operator accepts it (or it enrols with a token).
	AdmissionPending Admission = "pending"
	// AdmissionAccepted: the host is in the fleet; its reports count where
	// the signed plan gave its stage the version.
	AdmissionAccepted Admission = "accepted"
	// AdmissionRejected: an operator refused the key.
	AdmissionRejected Admission = "rejected"
	// AdmissionDecommissioned: the host left the fleet; its key is refused.
	AdmissionDecommissioned Admission = "decommissioned"
)

func (a Admission) String() string { return string(a) }

// Response is the server's answer to an admitted host's batch (200).
type Response struct {
	// Accepted are the ids the server took or had taken before: the host
	// removes them from its outbox.
	Accepted  []string  `json:"accepted"`
	Admission Admission `json:"admission"`
	// Applied counts the events that took effect; Stale those at or below
	// the host's last applied seq (a replay, or a resend after a lost
	// answer), acknowledged without effect.
	Applied int `json:"applied"`
	Stale   int `json:"stale,omitempty"`
}

// Refusal is the body of every answer other than 200. Admission is set
// when the refusal is about the host's standing (403).
type Refusal struct {
	Error     string    `json:"error"`
	Admission Admission `json:"admission,omitempty"`
}

// SignatureValue formats the signature header's value.
func SignatureValue(sig []byte) string { return "ed25519=" + base64.StdEncoding.EncodeToString(sig) }

// HostIDOf derives the host id of a public key: "h-" and the hex of the
// first 16 bytes of its SHA-256. The id is self-certifying: whoever signs
// with the key speaks for the id, and nobody else can.
func HostIDOf(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "h-" + hex.EncodeToString(sum[:16])
}

// VerifyBatch checks a received body: bounded, strictly decoded, the known
// format, every field within its bound, the host id derived from the
// public key, and the signature over the exact bytes. A verified batch is
// authentic, not admitted: what it says counts only once the server's
// records admit the host.
func VerifyBatch(body []byte, sigHeader string) (*Batch, error) {
	if len(body) > MaxBody {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(body), MaxBody)
	}
	var b Batch
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if b.Format != Format {
		return nil, fmt.Errorf("%w: format %.40q, want %q", ErrMalformed, b.Format, Format)
	}
	if len(b.Events) > MaxBatchEvents {
		return nil, fmt.Errorf("%w: %d events, the limit is %d", ErrTooLarge, len(b.Events), MaxBatchEvents)
	}
	if err := b.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTooLarge, err)
	}
	if b.Health != nil {
		if err := b.Health.Check(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	for _, e := range b.Events {
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	if _, err := b.Channels(); err != nil {
		return nil, err
	}
	if b.Sensor != "" {
		if err := compat.CheckSensor(b.Sensor); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	if len(b.Manifest) != 0 && (len(b.Manifest) != 64 || strings.Trim(b.Manifest, "0123456789abcdef") != "") {
		return nil, fmt.Errorf("%w: manifest %.80q is not a SHA-256 in lower-case hex", ErrMalformed, b.Manifest)
	}
	pub, err := base64.StdEncoding.DecodeString(b.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: public_key is not a base64 ed25519 key", ErrMalformed)
	}
	if HostIDOf(pub) != b.HostID {
		return nil, fmt.Errorf("%w: host_id %.40q does not belong to the public key", ErrBadSignature, b.HostID)
	}
	v, ok := strings.CutPrefix(sigHeader, "ed25519=")
	sig, err := base64.StdEncoding.DecodeString(v)
	if !ok || err != nil || !ed25519.Verify(pub, body, sig) {
		return nil, fmt.Errorf("%w: the %s header does not verify over the body", ErrBadSignature, SignatureHeader)
	}
	return &b, nil
}

// check reports the first batch-level bound b breaks.
func (b *Batch) check() error {
	switch {
	case len(b.Tags) > MaxTags:
		return fmt.Errorf("%d tags; the limit is %d", len(b.Tags), MaxTags)
	case len(b.Versions) > MaxVersions:
		return fmt.Errorf("%d channels in versions; the limit is %d", len(b.Versions), MaxVersions)
	case len(b.EnrolmentToken) > MaxTokenLen:
		return fmt.Errorf("an enrolment token of %d bytes; the limit is %d", len(b.EnrolmentToken), MaxTokenLen)
	}
	for _, t := range b.Tags {
		if len(t) > MaxTagLen || t == "" {
			return fmt.Errorf("a tag of %d bytes; tags are 1 to %d bytes", len(t), MaxTagLen)
		}
	}
	for k := range b.Versions {
		if len(k) > 10 {
			return fmt.Errorf("versions: channel %.20q is not a 32-bit number", k)
		}
	}
	return nil
}

// Cut shortens s to at most n bytes, at a rune boundary.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 {
		r, size := utf8.DecodeLastRuneInString(s)
		if r != utf8.RuneError || size > 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return s
}

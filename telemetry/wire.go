package telemetry

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ringfence/ringfence/state"
)

// Wire format v1 (docs/telemetry.md): POST <endpoint>/v1/telemetry with a
// JSON Batch as the body and the host's ed25519 signature over the exact
// body bytes in the SignatureHeader.
const (
	Format          = "ringfence-telemetry/v1"
	Path            = "/v1/telemetry"
	SignatureHeader = "Ringfence-Signature"
	MaxBatchEvents  = 500
	MaxBody         = 1 << 20
)

// Sentinel errors of VerifyBatch.
var (
	ErrMalformed    = errors.New("telemetry: malformed batch")
	ErrTooLarge     = errors.New("telemetry: batch too large")
	ErrBadSignature = errors.New("telemetry: bad signature")
)

// Batch is one POST's body.
type Batch struct {
	Format    string            `json:"format"`
	HostID    string            `json:"host_id"`
	PublicKey string            `json:"public_key"` // base64 (std) ed25519
	SentAt    time.Time         `json:"sent_at"`
	Tags      []string          `json:"tags,omitempty"`
	Versions  map[string]uint32 `json:"versions,omitempty"` // channel (decimal) -> running version
	Events    []Event           `json:"events"`
}

// Event is one event on the wire.
type Event = state.OutboxEvent

// Response is the server's answer to a batch: the ids it stored or had
// already (so resending is harmless).
type Response struct {
	Accepted []string `json:"accepted"`
}

// SignatureValue formats the signature header's value.
func SignatureValue(sig []byte) string { return "ed25519=" + base64.StdEncoding.EncodeToString(sig) }

// VerifyBatch checks a received body: bounded, strictly decoded, the known
// format, the host id derived from the public key, and the signature over
// the exact bytes.
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
		return nil, fmt.Errorf("%w: format %q, want %q", ErrMalformed, b.Format, Format)
	}
	if len(b.Events) > MaxBatchEvents {
		return nil, fmt.Errorf("%w: %d events, the limit is %d", ErrTooLarge, len(b.Events), MaxBatchEvents)
	}
	for _, e := range b.Events {
		if e.ID == "" || e.Type == "" {
			return nil, fmt.Errorf("%w: an event without id or type", ErrMalformed)
		}
	}
	pub, err := base64.StdEncoding.DecodeString(b.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: public_key is not a base64 ed25519 key", ErrMalformed)
	}
	if HostIDOf(pub) != b.HostID {
		return nil, fmt.Errorf("%w: host_id %q does not belong to the public key", ErrBadSignature, b.HostID)
	}
	v, ok := strings.CutPrefix(sigHeader, "ed25519=")
	sig, err := base64.StdEncoding.DecodeString(v)
	if !ok || err != nil || !ed25519.Verify(pub, body, sig) {
		return nil, fmt.Errorf("%w: the %s header does not verify over the body", ErrBadSignature, SignatureHeader)
	}
	return &b, nil
}

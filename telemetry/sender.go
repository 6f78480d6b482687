package telemetry

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/ringfence/ringfence/state"
)

// Backoff bounds after failed sends (full jitter between 0 and the bound).
const (
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = time.Hour
)

// ErrRejected is a 4xx answer other than 429: resending the same batch would
// get the same answer, so the events stay queued and the sender backs off.
var ErrRejected = errors.New("telemetry: the server rejected the batch")

// Sender sends the outbox upstream in signed batches, at least once:
// events leave the outbox only when the server lists them as accepted.
type Sender struct {
	// Endpoint is the server's base URL (Path is appended).
	Endpoint string
	Identity *Identity
	// Client makes the requests; nil means one with a 30 s timeout.
	Client *http.Client
	// Clock and Rand drive the backoff; nil means the system's.
	Clock func() time.Time
	Rand  *rand.Rand
	// Info returns the tags and running versions sent with each batch.
	Info func() (tags []string, versions map[string]uint32)
	// MinBackoff and MaxBackoff bound the wait after consecutive failures:
	// full jitter in [0, min(MaxBackoff, MinBackoff*2^failures)).
	MinBackoff, MaxBackoff time.Duration

	failures int
	next     time.Time
}

// SetInfo sets Info (the daemon hands in its own).
func (s *Sender) SetInfo(f func() (tags []string, versions map[string]uint32)) { s.Info = f }

// Due reports whether a send may be tried at now (not backing off).
func (s *Sender) Due(now time.Time) bool { return !now.Before(s.next) }

// NextAttempt is when the sender will try again after a failure.
func (s *Sender) NextAttempt() time.Time { return s.next }

func (s *Sender) now() time.Time {
	if s.Clock != nil {
		return s.Clock()
	}
	return time.Now()
}

// Flush sends batches of the outbox's oldest events until it is empty or a
// send fails. It returns how many events were accepted.
func (s *Sender) Flush(ctx context.Context, outbox *state.DB) (int, error) {
	sent := 0
	for {
		evs, err := outbox.Pending(MaxBatchEvents)
		if err != nil || len(evs) == 0 {
			return sent, err
		}
		accepted, err := s.send(ctx, evs)
		if err == nil && len(accepted) == 0 {
			err = errors.New("telemetry: the server accepted none of the batch")
		}
		if err != nil {
			s.backoff()
			return sent, err
		}
		if err := outbox.Ack(accepted); err != nil {
			return sent, err
		}
		s.failures, s.next = 0, time.Time{}
		sent += len(accepted)
		if len(accepted) < len(evs) {
			return sent, nil // the rest next time
		}
	}
}

func (s *Sender) backoff() {
	lo, hi := s.MinBackoff, s.MaxBackoff
	if lo <= 0 {
		lo = DefaultMinBackoff
	}
	if hi <= 0 {
		hi = DefaultMaxBackoff
	}
	bound := hi
	if s.failures < 40 {
		bound = min(hi, lo<<s.failures)
	}
	s.failures++
	r := s.Rand
	if r == nil {
		r = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	s.next = s.now().Add(time.Duration(r.Int64N(int64(bound)) + 1))
}

// send posts one batch and returns the ids the server accepted.
func (s *Sender) send(ctx context.Context, evs []Event) ([]string, error) {
	b := Batch{Format: Format, HostID: s.Identity.HostID(), PublicKey: base64.StdEncoding.EncodeToString(s.Identity.PublicKey()),
		SentAt: s.now().UTC(), Events: evs}
	if s.Info != nil {
		b.Tags, b.Versions = s.Info()
	}
	body, err := json.Marshal(b)
	for err == nil && len(body) > MaxBody && len(b.Events) > 1 {
		b.Events = b.Events[:len(b.Events)/2]
		body, err = json.Marshal(b)
	}
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(s.Endpoint, "/")+Path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(SignatureHeader, SignatureValue(s.Identity.Sign(body)))
	client := s.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("telemetry: send: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("telemetry: read the answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return nil, fmt.Errorf("telemetry: server answered %s; retrying later", resp.Status)
	default:
		return nil, fmt.Errorf("%w: %s: %s", ErrRejected, resp.Status, bytes.TrimSpace(raw[:min(len(raw), 512)]))
	}
	var r Response
	if len(raw) > MaxBody || json.Unmarshal(raw, &r) != nil {
		return nil, fmt.Errorf("telemetry: the server's answer is not a %s response", Format)
	}
	return r.Accepted, nil
}

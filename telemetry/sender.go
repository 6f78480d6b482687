package telemetry

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/wire"
)

// Backoff bounds after failed sends (full jitter between 0 and the bound).
const (
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = time.Hour
	// MaxPendingWait bounds how long a host waiting for admission waits
	// between tries, whatever the server's Retry-After says: an operator
	// who accepts it sees it report within this.
	MaxPendingWait = 10 * time.Minute
)

// Errors of Flush.
var (
	// ErrRejected is a 4xx answer other than 403 and 429: resending the
	// same batch would get the same answer, so the events stay queued and
	// the sender backs off.
	ErrRejected = errors.New("telemetry: the server rejected the batch")
	// ErrNotAdmitted is a 403: the server has not admitted this host
	// (pending an operator, rejected or decommissioned; Admission says
	// which). The events stay queued.
	ErrNotAdmitted = errors.New("telemetry: the server has not admitted this host")
)

// Outbox is where the sender takes events from: state.DB is one.
type Outbox interface {
	// Pending returns up to limit queued events, oldest (lowest Seq) first.
	Pending(limit int) ([]wire.Event, error)
	// Ack removes events the server took.
	Ack(ids []string) error
}

// Sender sends the outbox upstream in signed batches, at least once:
// events leave the outbox only when the server lists them as accepted.
type Sender struct {
	// Endpoint is the server's base URL (wire.Path is appended).
	Endpoint string
	Identity *Identity
	// EnrolmentToken, when set, goes with every batch until the server
	// answers that the host is admitted.
	EnrolmentToken string
	// Client makes the requests; nil means one with a 30 s timeout.
	Client *http.Client
	// Clock and Rand drive the backoff and stamp batches; nil means
	// clock.System and a random seed.
	Clock clock.Clock
	Rand  *rand.Rand
	// Info returns what each batch says of the host: the tags it asks for
	// (a request; the server's record decides), its running versions and
	// its sensor.
	Info func() wire.HostInfo
	// MinBackoff and MaxBackoff bound the wait after consecutive failures:
	// full jitter in [0, min(MaxBackoff, MinBackoff*2^failures)).
	MinBackoff, MaxBackoff time.Duration

	failures  int
	next      time.Time
	admission wire.Admission
}

// SetInfo sets Info (the daemon hands in its own).
func (s *Sender) SetInfo(f func() wire.HostInfo) { s.Info = f }

// Due reports whether a send may be tried at now (not backing off).
func (s *Sender) Due(now time.Time) bool { return !now.Before(s.next) }

// NextAttempt is when the sender will try again after a failure.
func (s *Sender) NextAttempt() time.Time { return s.next }

// Admission is the host's standing as the server last stated it ("" until
// the server has answered).
func (s *Sender) Admission() wire.Admission { return s.admission }

func (s *Sender) now() time.Time {
	if s.Clock != nil {
		return s.Clock.Now()
	}
	return clock.System{}.Now()
}

// Flush sends batches of the outbox's oldest events until it is empty or a
// send fails. It returns how many events were accepted.
func (s *Sender) Flush(ctx context.Context, outbox Outbox) (int, error) {
	sent := 0
	for {
		evs, err := outbox.Pending(wire.MaxBatchEvents)
		if err != nil || len(evs) == 0 {
			return sent, err
		}
		accepted, err := s.send(ctx, evs)
		if err == nil && len(accepted) == 0 {
			err = errors.New("telemetry: the server accepted none of the batch")
		}
		if err != nil {
			if !errors.Is(err, ErrNotAdmitted) || s.admission != wire.AdmissionPending {
				s.backoff() // a pending host waits as the server asked (refused)
			}
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
func (s *Sender) send(ctx context.Context, evs []wire.Event) ([]string, error) {
	b := wire.Batch{Format: wire.Format, HostID: s.Identity.HostID(), PublicKey: base64.StdEncoding.EncodeToString(s.Identity.PublicKey()),
		SentAt: s.now().UTC(), Events: evs}
	if s.admission != wire.AdmissionAccepted {
		b.EnrolmentToken = s.EnrolmentToken
	}
	if s.Info != nil {
		b.HostInfo = s.Info()
	}
	body, err := json.Marshal(b)
	for err == nil && len(body) > wire.MaxBody && len(b.Events) > 1 {
		b.Events = b.Events[:len(b.Events)/2]
		body, err = json.Marshal(b)
	}
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(s.Endpoint, "/")+wire.Path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(wire.SignatureHeader, wire.SignatureValue(s.Identity.Sign(body)))
	client := s.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("telemetry: send: %w", err)
	}
	defer resp.Body.Close()
	raw, err := boundedio.ReadAll(resp.Body, wire.MaxBody)
	if err != nil {
		return nil, fmt.Errorf("telemetry: read the server's answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusForbidden:
		return nil, s.refused(resp, raw)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return nil, fmt.Errorf("telemetry: server answered %s; retrying later", resp.Status)
	default:
		return nil, fmt.Errorf("%w: %s: %s", ErrRejected, resp.Status, bytes.TrimSpace(raw[:min(len(raw), 512)]))
	}
	var r wire.Response
	if json.Unmarshal(raw, &r) != nil {
		return nil, fmt.Errorf("telemetry: the server's answer is not a %s response", wire.Format)
	}
	s.admission = r.Admission
	return r.Accepted, nil
}

// refused reads a 403: the host's standing, and how long to wait. A
// pending host tries again when the server says (bounded by
// MaxPendingWait); a rejected or decommissioned one backs off as after any
// failure, up to MaxBackoff.
func (s *Sender) refused(resp *http.Response, raw []byte) error {
	var r wire.Refusal
	_ = json.Unmarshal(raw, &r)
	if r.Admission == "" {
		return fmt.Errorf("%w: %s: %s", ErrRejected, resp.Status, bytes.TrimSpace(raw[:min(len(raw), 512)]))
	}
	s.admission = r.Admission
	if r.Admission == wire.AdmissionPending {
		wait := DefaultMinBackoff
		if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 0 {
			wait = time.Duration(n) * time.Second
		}
		s.next = s.now().Add(min(max(wait, s.MinBackoff), MaxPendingWait))
	}
	return fmt.Errorf("%w (%s): %s", ErrNotAdmitted, r.Admission, wire.Cut(r.Error, 512))
}

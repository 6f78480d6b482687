package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"sync"

	"golang.org/x/time/rate"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/wire"
)

// maxLimiters bounds the per-host rate limiters kept in memory; past it the
// table starts afresh (every host gets a full burst again).
const maxLimiters = 1 << 20

// pendingRetry is the Retry-After a host waiting for admission is given, in
// seconds: it tries again about this often (telemetry.MaxPendingWait bounds
// it on the host).
const pendingRetry = 60

// limiter rate-limits telemetry batches per host id (golang.org/x/time/rate:
// a token bucket per host).
type limiter struct {
	mu    sync.Mutex
	rate  rate.Limit
	burst int
	hosts map[string]*rate.Limiter
}

func newLimiter(perSecond float64, burst int) *limiter {
	return &limiter{rate: rate.Limit(perSecond), burst: burst, hosts: map[string]*rate.Limiter{}}
}

func (l *limiter) allow(host string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.hosts[host]
	if lim == nil {
		if len(l.hosts) >= maxLimiters {
			clear(l.hosts)
		}
		lim = rate.NewLimiter(l.rate, l.burst)
		l.hosts[host] = lim
	}
	return lim.Allow()
}

// handleTelemetry takes one signed batch (docs/telemetry.md): bounded,
// verified (the host id belongs to the key that signed the exact body),
// rate-limited per host, and then, in order:
//   - a host not in the fleet is admitted by a valid enrolment token, or
//     recorded as pending (bounded) and refused with 403: nothing it says
//     counts;
//   - an admitted host's events above its last applied seq take effect
//     (the rest are a replay or a resend and change nothing), and only
//     where the signed plan gave its stage the version;
//   - the effects are committed (fsync) before the batch is acknowledged;
//     a failed commit changes nothing and answers 503, so the host resends.
func (s *Server) handleTelemetry(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, wire.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.metrics.rejected("too-large")
			refuse(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("telemetry batch over %d bytes; send fewer events per batch", wire.MaxBody), "")
			return
		}
		refuse(w, http.StatusBadRequest, "read the batch: "+err.Error(), "")
		return
	}
	b, err := wire.VerifyBatch(body, r.Header.Get(wire.SignatureHeader))
	switch {
	case errors.Is(err, wire.ErrBadSignature):
		s.metrics.rejected("bad-signature")
		refuse(w, http.StatusUnauthorized, err.Error(), "")
		return
	case errors.Is(err, wire.ErrTooLarge):
		s.metrics.rejected("too-large")
		refuse(w, http.StatusRequestEntityTooLarge, err.Error(), "")
		return
	case err != nil:
		s.metrics.rejected("malformed")
		refuse(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	if !s.limits.allow(b.HostID) {
		s.metrics.rejected("rate-limited")
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(1/s.opts.BatchesPerHost))))
		refuse(w, http.StatusTooManyRequests, "too many batches from "+b.HostID+"; retry later", "")
		return
	}
	if s.opts.Replication != nil {
		s.queueTelemetry(w, r, b, body)
		return
	}
	s.mu.Lock()
	var standing wire.Admission
	var why string
	var res controller.Ingested
	_, err = s.change(func() ([]controller.Decision, error) {
		var err error
		standing, why, res, err = s.apply(b)
		return res.Decisions, err
	})
	s.mu.Unlock()
	switch {
	case errors.Is(err, admission.ErrPendingFull):
		s.metrics.rejected("pending-full")
		w.Header().Set("Retry-After", strconv.Itoa(10*pendingRetry))
		refuse(w, http.StatusServiceUnavailable, err.Error(), "")
		return
	case err != nil:
		s.log.Error("telemetry batch", "host", b.HostID, "err", err)
		refuse(w, http.StatusServiceUnavailable, "the batch could not be stored; retry later", "")
		return
	case standing != wire.AdmissionAccepted:
		s.metrics.rejected("not-admitted")
		if standing == wire.AdmissionPending {
			w.Header().Set("Retry-After", strconv.Itoa(pendingRetry))
		}
		refuse(w, http.StatusForbidden, why, standing)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(wire.Response{Accepted: eventIDs(b), Admission: wire.AdmissionAccepted, Applied: res.Applied, Stale: res.Stale})
}

// apply is a verified batch's effect, inside change (the caller holds
// s.mu): a host not in the fleet is admitted by its enrolment token or
// recorded as pending (its standing and what to tell it are returned);
// an admitted host's events are ingested and counted in the metrics.
func (s *Server) apply(b *wire.Batch) (wire.Admission, string, controller.Ingested, error) {
	if !s.ctl.Known(b.HostID) {
		standing, why, err := s.admit(b)
		if err != nil || standing != wire.AdmissionAccepted {
			return standing, why, controller.Ingested{}, err // a new pending record is committed; nothing else
		}
	}
	versions, _ := b.Channels() // VerifyBatch checked them
	rep := controller.Report{HostID: b.HostID, Versions: versions, Sensor: b.Sensor, Manifest: b.Manifest, Health: b.Health, Events: make([]controller.Event, len(b.Events))}
	for i, e := range b.Events {
		rep.Events[i] = controller.Event{Seq: e.Seq, Kind: e.Kind, Channel: e.Channel, Version: e.Version, Reason: e.Reason}
	}
	h, _ := s.ctl.Host(b.HostID)
	lastSeq := h.LastSeq
	res, err := s.ctl.Ingest(rep, s.clock.Now())
	if err == nil {
		s.counted = append(s.counted, countBatch{b, lastSeq})
	}
	return wire.AdmissionAccepted, "", res, err
}

// countBatch is a batch whose events the metrics count once its change
// is committed.
type countBatch struct {
	b       *wire.Batch
	lastSeq uint64
}

// admit decides about a host not in the fleet that sent a batch: a valid
// enrolment token admits it with the token's fleet and tags (within
// MaxHosts); otherwise its key waits as pending (or stays rejected or
// decommissioned). It returns the host's standing and, when that is not
// accepted, what to tell it; admission.ErrPendingFull when it cannot even
// wait. The caller holds s.mu, inside change.
func (s *Server) admit(b *wire.Batch) (wire.Admission, string, error) {
	now := s.clock.Now()
	if rec, ok := s.reg.Record(b.HostID); ok && rec.State != wire.AdmissionPending {
		return rec.State, fmt.Sprintf("host %s is %s (by %s: %s); an operator can accept it again with 'ringfence-server hosts accept'", b.HostID, rec.State, rec.DecidedBy, rec.Why), nil
	}
	note := ""
	if b.EnrolmentToken != "" {
		if s.ctl.Hosts() >= s.opts.MaxHosts {
			note = fmt.Sprintf("the fleet is at serve --max-hosts (%d hosts); the operator must raise it or decommission hosts", s.opts.MaxHosts)
		} else if tok, err := s.reg.Redeem(b.EnrolmentToken, now); err != nil {
			note = err.Error() + "; ask the operator for a new token (ringfence-server tokens create)"
		} else if _, err := s.ctl.Admit(b.HostID, controller.Admission{Fleet: tok.Fleet, Tags: tok.Tags, By: "token:" + tok.ID}, now); err != nil {
			note = err.Error()
		} else {
			s.reg.Admitted(b.HostID)
			s.log.Info("host admitted by enrolment token", "host", b.HostID, "token", tok.ID, "fleet", tok.Fleet, "tags", tok.Tags)
			return wire.AdmissionAccepted, "", nil
		}
	}
	st, err := s.reg.Seen(b.HostID, b.Tags, note, now)
	if err != nil {
		return "", "", err
	}
	msg := fmt.Sprintf("host %s is pending admission: nothing it reports counts until an operator accepts it ('ringfence-server hosts accept %s') or it presents a valid enrolment token", b.HostID, b.HostID)
	if note != "" {
		msg += "; its token was refused: " + note
	}
	return st, msg, nil
}

func eventIDs(b *wire.Batch) []string {
	ids := make([]string, len(b.Events))
	for i, e := range b.Events {
		ids[i] = e.ID
	}
	return ids
}

// refuse answers an error a person (or a host) can act on.
func refuse(w http.ResponseWriter, code int, msg string, standing wire.Admission) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(wire.Refusal{Error: msg, Admission: standing})
}

// httpError answers a JSON error a person can act on.
func httpError(w http.ResponseWriter, code int, msg string) { refuse(w, code, msg, "") }

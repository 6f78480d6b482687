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

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/telemetry"
)

// maxLimiters bounds the per-host rate limiters kept in memory; past it the
// table starts afresh (every host gets a full burst again).
const maxLimiters = 1 << 20

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
// rate-limited per host, idempotent on event ids, and acknowledged only
// after it is committed.
func (s *Server) handleTelemetry(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, telemetry.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.metrics.rejected("too-large")
			httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("telemetry batch over %d bytes; send fewer events per batch", telemetry.MaxBody))
			return
		}
		httpError(w, http.StatusBadRequest, "read the batch: "+err.Error())
		return
	}
	b, err := telemetry.VerifyBatch(body, r.Header.Get(telemetry.SignatureHeader))
	switch {
	case errors.Is(err, telemetry.ErrBadSignature):
		s.metrics.rejected("bad-signature")
		httpError(w, http.StatusUnauthorized, err.Error())
		return
	case errors.Is(err, telemetry.ErrTooLarge):
		s.metrics.rejected("too-large")
		httpError(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	case err != nil:
		s.metrics.rejected("malformed")
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !s.limits.allow(b.HostID) {
		s.metrics.rejected("rate-limited")
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(1/s.opts.BatchesPerHost))))
		httpError(w, http.StatusTooManyRequests, "too many batches from "+b.HostID+"; retry later")
		return
	}
	rep := controller.Report{HostID: b.HostID, Tags: b.Tags}
	if len(b.Versions) > 0 {
		rep.Versions = map[uint32]uint32{}
		for k, v := range b.Versions {
			ch, err := strconv.ParseUint(k, 10, 32)
			if err != nil {
				s.metrics.rejected("malformed")
				httpError(w, http.StatusBadRequest, fmt.Sprintf("versions: channel %q is not a number", k))
				return
			}
			rep.Versions[uint32(ch)] = v
		}
	}
	ids := make([]string, len(b.Events))
	for i, e := range b.Events {
		ids[i] = e.ID
	}

	s.mu.Lock()
	if !s.ctl.Known(b.HostID) && s.ctl.Hosts() >= s.opts.MaxHosts {
		s.mu.Unlock()
		s.metrics.rejected("host-limit")
		httpError(w, http.StatusForbidden, fmt.Sprintf("the server keeps at most %d hosts and %s is new; raise serve --max-hosts", s.opts.MaxHosts, b.HostID))
		return
	}
	fresh, err := s.db.Fresh(b.HostID, ids)
	if err != nil {
		s.mu.Unlock()
		httpError(w, http.StatusServiceUnavailable, "store: "+err.Error())
		return
	}
	var taken []string
	for i, e := range b.Events {
		if !fresh[i] {
			continue
		}
		taken = append(taken, e.ID)
		rep.Events = append(rep.Events, controller.Event{Type: e.Type, Channel: e.Channel, Version: e.Version, Reason: e.Reason})
	}
	now := s.clock.Now()
	ds := s.ctl.Ingest(rep, now)
	err = s.commit(b.HostID, taken, now, ds)
	s.mu.Unlock()
	if err != nil {
		s.log.Error("telemetry batch", "host", b.HostID, "err", err)
		httpError(w, http.StatusServiceUnavailable, "the batch could not be stored; retry later")
		return
	}
	s.metrics.batch(b, fresh)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(telemetry.Response{Accepted: ids})
}

// httpError answers a JSON error a person can act on.
func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

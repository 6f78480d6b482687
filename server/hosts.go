package server

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/wire"
)

// The fleet's admission through the API (docs/server.md, "Admitting
// hosts"): list and show hosts, accept (or pre-register), reject,
// decommission, retag; issue, list and revoke enrolment tokens. Every
// action needs the operator token and is recorded with who and why.

// Bounds of a host listing.
const (
	defaultHostPage = 100
	maxHostPage     = 1000
)

// HostView is one host as the API shows it: in the fleet (accepted), or
// a key that is not (pending, rejected, decommissioned).
type HostView struct {
	ID        string            `json:"id"`
	State     wire.Admission    `json:"state"`
	Fleet     string            `json:"fleet,omitempty"`
	Tags      []string          `json:"tags,omitempty"`
	Requested []string          `json:"requested_tags,omitempty"`
	Admitted  time.Time         `json:"admitted,omitzero"`
	By        string            `json:"by,omitempty"`
	Why       string            `json:"why,omitempty"`
	Note      string            `json:"note,omitempty"`
	FirstSeen time.Time         `json:"first_seen,omitzero"`
	LastSeen  time.Time         `json:"last_seen,omitzero"`
	Versions  map[uint32]uint32 `json:"versions,omitempty"`
	Bucket    int               `json:"bucket,omitempty"`
	// LastSeq is the highest event seq applied from the host.
	LastSeq uint64 `json:"last_seq,omitempty"`
	// Sensor and Manifest are the installed sensor's version and manifest
	// digest, as the host last said.
	Sensor   string `json:"sensor,omitempty"`
	Manifest string `json:"manifest,omitempty"`
}

// hostView copies what it shows of h: the caller encodes it after s.mu is
// released, while batches keep changing the host.
func hostView(h *controller.Host) HostView {
	return HostView{ID: h.ID, State: wire.AdmissionAccepted, Fleet: h.Fleet, Tags: h.Tags, Admitted: h.Admitted, By: h.AdmittedBy,
		LastSeen: h.LastSeen, Versions: maps.Clone(h.Versions), Bucket: h.Bucket, LastSeq: h.LastSeq, Sensor: h.Sensor, Manifest: h.Manifest}
}

func recordView(r admission.Record) HostView {
	return HostView{ID: r.ID, State: r.State, Fleet: r.Fleet, Requested: r.Requested, By: r.DecidedBy, Why: r.Why, Note: r.Note,
		FirstSeen: r.FirstSeen, LastSeen: r.LastSeen, Admitted: r.Decided}
}

// HostList is GET /v1/hosts: one page, by id; Next is the id to pass as
// after= for the next page ("" at the end).
type HostList struct {
	Hosts   []HostView `json:"hosts"`
	Next    string     `json:"next,omitempty"`
	Fleet   int        `json:"fleet"`
	Pending int        `json:"pending"`
}

// Hosts lists hosts in a state ("" for every state), by id, after the id
// after, at most limit.
func (s *Server) Hosts(state wire.Admission, after string, limit int) HostList {
	if limit <= 0 || limit > maxHostPage {
		limit = defaultHostPage
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := HostList{Fleet: s.ctl.Hosts(), Pending: s.reg.PendingCount()}
	var page []HostView
	if state == "" || state == wire.AdmissionAccepted {
		// The fleet can hold millions: the controller copies out the
		// page alone.
		for _, h := range s.ctl.HostsAfter(after, limit+1) {
			page = append(page, hostView(h))
		}
	}
	if state != wire.AdmissionAccepted {
		for _, r := range s.reg.Records(state, after, limit+1) {
			page = append(page, recordView(r))
		}
		slices.SortFunc(page, func(a, b HostView) int { return cmp.Compare(a.ID, b.ID) })
	}
	if len(page) > limit {
		page = page[:limit]
		out.Next = page[limit-1].ID
	}
	out.Hosts = page
	if out.Hosts == nil {
		out.Hosts = []HostView{}
	}
	return out
}

// HostInfo returns one host or key.
func (s *Server) HostInfo(id string) (HostView, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, ok := s.ctl.Host(id); ok {
		return hostView(h), nil
	}
	if r, ok := s.reg.Record(id); ok {
		return recordView(r), nil
	}
	return HostView{}, fmt.Errorf("%w: no host or key %.70q; a host shows up when it first reports, or accept its id in advance", admission.ErrNotFound, id)
}

// HostRequest is the body of the host actions.
type HostRequest struct {
	ActionRequest
	Fleet string   `json:"fleet,omitempty"`
	Tags  []string `json:"tags,omitempty"`
}

// HostAction is what a host action answers: the host after it.
type HostAction struct {
	Host HostView `json:"host"`
}

// Accept admits a host: a pending key, a rejected or decommissioned one
// taken back, or an id given in advance (pre-registration: the host is in
// the fleet from its first batch). Fleet and tags are the server's record.
func (s *Server) Accept(id string, q HostRequest) (HostView, error) {
	if !validHostID(id) {
		return HostView{}, fmt.Errorf("%w: %.70q is not a host id (h- and 32 hex digits; 'ringfence status' on the host shows it, or give the key to the CLI)", errBadRequest, id)
	}
	return s.hostAction(q.Why, func(now time.Time) (HostView, error) {
		if s.ctl.Hosts() >= s.opts.MaxHosts {
			return HostView{}, fmt.Errorf("%w: the fleet is at serve --max-hosts (%d hosts); raise it or decommission hosts", errBadRequest, s.opts.MaxHosts)
		}
		fleet := q.Fleet
		if r, ok := s.reg.Record(id); ok && fleet == "" {
			fleet = r.Fleet
		}
		h, err := s.ctl.Admit(id, controller.Admission{Fleet: fleet, Tags: q.Tags, By: who(q.Who)}, now)
		if err != nil {
			return HostView{}, err
		}
		s.reg.Admitted(id)
		s.log.Info("host accepted", "host", id, "by", who(q.Who), "why", q.Why, "fleet", fleet, "tags", q.Tags)
		return hostView(h), nil
	})
}

// Reject refuses a key that is not in the fleet.
func (s *Server) Reject(id string, q HostRequest) (HostView, error) {
	return s.hostAction(q.Why, func(now time.Time) (HostView, error) {
		if s.ctl.Known(id) {
			return HostView{}, fmt.Errorf("%w: %s is in the fleet; decommission it instead", admission.ErrState, id)
		}
		r, err := s.reg.Reject(id, who(q.Who), q.Why, now)
		if err == nil {
			s.log.Info("key rejected", "host", id, "by", who(q.Who), "why", q.Why)
		}
		return recordView(r), err
	})
}

// Decommission takes a host out of the fleet; its key is refused from then
// on (accept takes it back).
func (s *Server) Decommission(id string, q HostRequest) (HostView, error) {
	return s.hostAction(q.Why, func(now time.Time) (HostView, error) {
		h, ok := s.ctl.Host(id)
		if !ok {
			return HostView{}, fmt.Errorf("%w: %s", controller.ErrNotAdmitted, id)
		}
		fleet := h.Fleet
		if err := s.ctl.Remove(id); err != nil {
			return HostView{}, err
		}
		r := s.reg.Decommissioned(id, fleet, who(q.Who), q.Why, now)
		s.log.Info("host decommissioned", "host", id, "by", who(q.Who), "why", q.Why)
		return recordView(r), nil
	})
}

// SetTags replaces an admitted host's tags (the canary group is a tag):
// the plans of running rollouts whose stages name tags are signed again.
func (s *Server) SetTags(id string, q HostRequest) (HostView, error) {
	return s.hostAction(q.Why, func(time.Time) (HostView, error) {
		if err := s.ctl.SetTags(id, q.Tags); err != nil {
			return HostView{}, err
		}
		h, _ := s.ctl.Host(id)
		s.log.Info("host tags set", "host", id, "by", who(q.Who), "why", q.Why, "tags", q.Tags)
		return hostView(h), nil
	})
}

// hostAction commits one admission decision.
func (s *Server) hostAction(why string, act func(time.Time) (HostView, error)) (HostView, error) {
	if why == "" {
		return HostView{}, fmt.Errorf("%w: say why (it is recorded)", errBadRequest)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.ReadOnly {
		return HostView{}, ErrReadOnly
	}
	var v HostView
	_, err := s.change(func() ([]controller.Decision, error) {
		var err error
		v, err = act(s.clock.Now())
		return nil, err
	})
	return v, err
}

func who(w string) string {
	if w == "" {
		return "operator"
	}
	return w
}

// validHostID reports whether id has the form wire.HostIDOf gives.
func validHostID(id string) bool {
	hex, ok := strings.CutPrefix(id, "h-")
	if !ok || len(hex) != 32 {
		return false
	}
	for _, c := range hex {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// TokenRequest is the body of POST /v1/enrolment-tokens. TTL is a
// duration such as "72h".
type TokenRequest struct {
	Who     string   `json:"who"`
	Fleet   string   `json:"fleet,omitempty"`
	Tags    []string `json:"tags,omitempty"`
	TTL     string   `json:"ttl"`
	MaxUses int      `json:"max_uses"`
	Note    string   `json:"note,omitempty"`
}

// NewToken is the answer to a token's creation: the secret, shown this
// once, and the record.
type NewToken struct {
	Token  string          `json:"token"`
	Record admission.Token `json:"record"`
}

// CreateToken issues an enrolment token.
func (s *Server) CreateToken(q TokenRequest) (NewToken, error) {
	ttl, err := duration("ttl", q.TTL, false)
	if err != nil {
		return NewToken{}, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if ttl == 0 {
		return NewToken{}, fmt.Errorf("%w: give the token a lifetime (ttl, e.g. 72h)", errBadRequest)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.ReadOnly {
		return NewToken{}, ErrReadOnly
	}
	var out NewToken
	_, err = s.change(func() ([]controller.Decision, error) {
		var err error
		out.Token, out.Record, err = s.reg.CreateToken(admission.TokenSpec{Fleet: q.Fleet, Tags: q.Tags, TTL: ttl, MaxUses: q.MaxUses, Note: q.Note}, who(q.Who), s.clock.Now())
		return nil, err
	})
	if err == nil {
		s.log.Info("enrolment token created", "token", out.Record.ID, "by", who(q.Who), "fleet", q.Fleet, "tags", q.Tags, "expires", out.Record.Expires, "max_uses", q.MaxUses)
	}
	return out, err
}

// Tokens lists the enrolment tokens (never their secrets).
func (s *Server) Tokens() []admission.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reg.Tokens()
}

// RevokeToken stops a token from admitting more hosts.
func (s *Server) RevokeToken(id, by string) (admission.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.ReadOnly {
		return admission.Token{}, ErrReadOnly
	}
	var t admission.Token
	_, err := s.change(func() ([]controller.Decision, error) {
		var err error
		t, err = s.reg.RevokeToken(id, s.clock.Now())
		return nil, err
	})
	if err == nil {
		s.log.Info("enrolment token revoked", "token", id, "by", who(by))
	}
	return t, err
}

func (s *Server) hostRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /v1/hosts", s.leaderOnly(s.auth(s.handleHosts)))
	m.HandleFunc("GET /v1/hosts/{id}", s.leaderOnly(s.auth(s.handleHost)))
	m.HandleFunc("POST /v1/hosts/{id}/{action}", s.leaderOnly(s.auth(s.handleHostAction)))
	m.HandleFunc("GET /v1/enrolment-tokens", s.leaderOnly(s.auth(s.handleTokens)))
	m.HandleFunc("POST /v1/enrolment-tokens", s.leaderOnly(s.auth(s.handleCreateToken)))
	m.HandleFunc("POST /v1/enrolment-tokens/{id}/revoke", s.leaderOnly(s.auth(s.handleRevokeToken)))
	m.HandleFunc("POST /v1/rollouts/{channel}/allow", s.leaderOnly(s.auth(s.handleAllow)))
}

func (s *Server) handleHosts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := wire.Admission(q.Get("admission"))
	switch state {
	case "", wire.AdmissionPending, wire.AdmissionAccepted, wire.AdmissionRejected, wire.AdmissionDecommissioned:
	default:
		httpError(w, http.StatusBadRequest, "admission is pending, accepted, rejected or decommissioned")
		return
	}
	limit, _ := strconv.Atoi(q.Get("limit"))
	writeJSON(w, http.StatusOK, s.Hosts(state, q.Get("after"), limit))
}

func (s *Server) handleHost(w http.ResponseWriter, r *http.Request) {
	v, err := s.HostInfo(r.PathValue("id"))
	if err != nil {
		httpError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, HostAction{Host: v})
}

// HostAction applies a host action by name: accept, reject, decommission
// or tags.
func (s *Server) HostAction(id, action string, q HostRequest) (HostView, error) {
	switch action {
	case "accept":
		return s.Accept(id, q)
	case "reject":
		return s.Reject(id, q)
	case "decommission":
		return s.Decommission(id, q)
	case "tags":
		return s.SetTags(id, q)
	}
	return HostView{}, fmt.Errorf("%w: host actions are accept, reject, decommission and tags", errUnknownAction)
}

// errUnknownAction is an action the API does not have (404).
var errUnknownAction = errors.New("server: no such action")

func (s *Server) handleHostAction(w http.ResponseWriter, r *http.Request) {
	var q HostRequest
	if err := decode(r, &q); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	v, err := s.HostAction(r.PathValue("id"), r.PathValue("action"), q)
	if err != nil {
		httpError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, HostAction{Host: v})
}

func (s *Server) handleTokens(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Tokens []admission.Token `json:"tokens"`
	}{s.Tokens()})
}

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	var q TokenRequest
	if err := decode(r, &q); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	t, err := s.CreateToken(q)
	if err != nil {
		httpError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request) {
	var q ActionRequest
	if err := decode(r, &q); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	t, err := s.RevokeToken(r.PathValue("id"), q.Who)
	if err != nil {
		httpError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Token admission.Token `json:"token"`
	}{t})
}

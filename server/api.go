package server

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/compat"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/gate"
	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/slo"
	"github.com/ringfence/ringfence/tufrepo"
)

// maxRequest bounds an API request body.
const maxRequest = 64 << 10

// versionName names a running version; 0 is a host with no content.
func versionName(v uint32) string {
	if v == 0 {
		return "none"
	}
	return strconv.FormatUint(uint64(v), 10)
}

// sensorName names a host's sensor version; "" is a host that has not
// said (an older ringfenced).
func sensorName(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// View is a rollout as the API and the dashboard show it.
type View struct {
	Channel      uint32           `json:"channel"`
	From         uint32           `json:"from_version"`
	To           uint32           `json:"to_version"`
	State        controller.State `json:"state"`
	Schedule     string           `json:"schedule"`
	Stage        int              `json:"stage"`
	Started      time.Time        `json:"started"`
	StageStarted time.Time        `json:"stage_started"`
	Updated      time.Time        `json:"updated"`
	Stages       []StageView      `json:"stages"`
	Versions     map[string]int   `json:"versions"` // hosts per running version ("none": no content yet)
	// Compat is the new version's compatibility constraint, as published.
	// Sensors counts the channel's hosts per sensor version ("unknown":
	// hosts that have not said), and Excludes lists those of them the
	// constraint keeps out of the rollout.
	Compat    compat.Constraint     `json:"compat"`
	Sensors   map[string]int        `json:"sensors"`
	Excludes  []string              `json:"excludes"`
	Gate      GateView              `json:"gate"`
	History   []controller.Point    `json:"history"`
	Decisions []controller.Decision `json:"decisions"` // newest first
	Deny      []uint32              `json:"deny"`
	Plan      any                   `json:"plan"`
	// PlanSigned is false while the plan for the rollout's state is
	// committed but not yet signed into the repository (SignError says
	// why; the server retries): hosts still follow the last signed plan.
	PlanSigned bool   `json:"plan_signed"`
	SignError  string `json:"sign_error,omitempty"`
	// SLO are the rollout's SLO checks and what their last evaluation
	// found (slo.go).
	SLO []SLOView `json:"slo,omitempty"`
}

// StageView is one stage as shown.
type StageView struct {
	Name        string      `json:"name"`
	Percent     float64     `json:"percent"`
	Hosts       []string    `json:"hosts,omitempty"`
	Tags        []string    `json:"tags,omitempty"`
	BakeSeconds float64     `json:"bake_seconds"`
	MinHosts    int         `json:"min_hosts"`
	Status      StageStatus `json:"status"`
	KnownHosts  int         `json:"known_hosts"`
	// LeftOut counts hosts the stage's tags matched beyond the bound of
	// hosts a stage names (controller.MaxStageHosts): not in the stage.
	LeftOut int `json:"left_out,omitempty"`
}

// StageStatus is where a stage is in its rollout.
type StageStatus string

// Stage statuses.
const (
	StageDone    StageStatus = "done"
	StageCurrent StageStatus = "current"
	StagePending StageStatus = "pending"
)

func (s StageStatus) String() string { return string(s) }

// GateView is the gate's state as shown.
type GateView struct {
	Statistic float64 `json:"statistic"`
	Threshold float64 `json:"threshold"`
	Alpha     float64 `json:"alpha"`
	controller.Counts
	// Each test's own statistic (the largest is Statistic): failures
	// hosts reported, silence, health.
	Reported float64 `json:"reported_statistic"`
	Silence  float64 `json:"silence_statistic"`
	Health   float64 `json:"health_statistic"`
	// Expected is the treated failures the gate would have seen if the new
	// version were no worse (what a stage's min_evidence waits for).
	Expected float64 `json:"expected_failures"`
	// Promoted: the promotion test passed (stages end before their bake).
	Promoted     bool                     `json:"promoted"`
	Promote      gate.Promotion           `json:"promote"`
	HealthLimits *controller.HealthLimits `json:"health_limits,omitempty"`
}

// view builds r's view. The caller holds s.mu.
func (s *Server) view(r *controller.Rollout) View {
	reported, silence, health := r.Statistics()
	v := View{Channel: r.Channel, From: r.From, To: r.To, State: r.State, Schedule: r.Schedule, Stage: r.Stage,
		Started: r.Started, StageStarted: r.StageStarted, Updated: r.Updated, Versions: map[string]int{},
		Gate: GateView{Statistic: controller.Finite(r.Result.Statistic), Threshold: r.Result.Threshold, Alpha: r.Gate.Alpha, Counts: r.Counts,
			Reported: reported, Silence: silence, Health: health,
			Expected: r.GateState.Expected, Promoted: r.Promoted(), Promote: r.Promote, HealthLimits: r.HealthLimits},
		History: r.History, Deny: r.Deny, Plan: s.ctl.Plan(r.Channel), PlanSigned: true}
	if u, ok := s.unsigned[r.Channel]; ok {
		v.PlanSigned, v.SignError = false, u.Error
	}
	if v.History == nil {
		v.History = []controller.Point{}
	}
	if v.Deny == nil {
		v.Deny = []uint32{}
	}
	sizes, over := s.ctl.StageSizes(r.Channel), s.ctl.StageOverflow(r.Channel)
	for i, st := range r.Stages {
		status := StagePending
		switch {
		case r.State == controller.StateCompleted || i < r.Stage:
			status = StageDone
		case i == r.Stage:
			status = StageCurrent
		}
		v.Stages = append(v.Stages, StageView{Name: st.Name, Percent: st.Percent, Hosts: st.Hosts, Tags: st.Tags,
			BakeSeconds: st.Bake.Seconds(), MinHosts: st.MinHosts, Status: status, KnownHosts: sizes[i], LeftOut: over[i]})
	}
	v.Versions = foldVersions(s.ctl.Versions(r.Channel), append([]uint32{r.From, r.To}, r.Deny...)...)
	v.Compat, v.Sensors, v.Excludes = r.Compat, map[string]int{}, []string{}
	for sensor, n := range s.ctl.SensorsOn(r.Channel) {
		v.Sensors[sensorName(sensor)] = n
		if !r.Compat.Allows(sensor) {
			v.Excludes = append(v.Excludes, sensorName(sensor))
		}
	}
	slices.Sort(v.Excludes)
	v.SLO = s.sloViews(r)
	v.Decisions = make([]controller.Decision, 0, len(r.Decisions))
	for i := len(r.Decisions) - 1; i >= 0; i-- {
		v.Decisions = append(v.Decisions, r.Decisions[i])
	}
	return v
}

// Overview is GET /v1/rollouts: every rollout, the fleet's size, and the
// store's health (a failing commit shows here until one succeeds).
type Overview struct {
	Rollouts []View `json:"rollouts"`
	Hosts    int    `json:"hosts"`
	// Sensors counts the fleet's hosts per sensor version ("unknown":
	// hosts that have not said).
	Sensors map[string]int `json:"sensors"`
	Pending int            `json:"pending_hosts"`
	Store   storeHealth    `json:"store"`
}

func (s *Server) handleRollouts(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	o := Overview{Rollouts: s.status(), Hosts: s.ctl.Hosts(), Sensors: map[string]int{}, Pending: s.reg.PendingCount(), Store: s.health}
	for sensor, n := range s.ctl.Sensors() {
		o.Sensors[sensorName(sensor)] = n
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, o)
}

func (s *Server) handleRollout(w http.ResponseWriter, r *http.Request) {
	ch, err := strconv.ParseUint(r.PathValue("channel"), 10, 32)
	if err != nil {
		httpError(w, http.StatusBadRequest, "channel must be a number")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ro, ok := s.ctl.Rollout(uint32(ch))
	if !ok {
		httpError(w, http.StatusNotFound, fmt.Sprintf("no rollout on channel %d; start one with 'ringfence-server rollout start'", ch))
		return
	}
	writeJSON(w, http.StatusOK, s.view(ro))
}

// auth requires the operator token as a bearer token.
func (s *Server) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
			httpError(w, http.StatusUnauthorized, "the operator token is missing or wrong: send 'Authorization: Bearer <token>' with the token from "+TokenFile+" in the server's state directory")
			return
		}
		next(w, r)
	}
}

// ActionRequest is the body of POST /v1/rollouts/{channel}/{action}.
type ActionRequest struct {
	Who string `json:"who"`
	Why string `json:"why"`
}

// StartRequest is the body of POST /v1/rollouts.
type StartRequest struct {
	ActionRequest
	Channel  uint32 `json:"channel"`
	Version  uint32 `json:"version"`
	From     uint32 `json:"from,omitempty"`
	Schedule string `json:"schedule,omitempty"`
	// Stages replace the default plan; CanaryHosts/CanaryTags replace the
	// server's canary group in the default plan.
	Stages       []StageRequest `json:"stages,omitempty"`
	CanaryHosts  []string       `json:"canary_hosts,omitempty"`
	CanaryTags   []string       `json:"canary_tags,omitempty"`
	HealthWindow string         `json:"health_window,omitempty"`
	Grace        string         `json:"grace,omitempty"`
	Silence      string         `json:"silence,omitempty"`
	Alpha        float64        `json:"alpha,omitempty"`
	// Promote is the promotion test (docs/gate.md); nil: the default
	// (margin 2, beta 0.05). {"off": true} keeps every stage to its bake.
	Promote *gate.Promotion `json:"promote,omitempty"`
	// ManualRollback keeps a halted rollout halted rather than rolling back.
	ManualRollback bool `json:"manual_rollback,omitempty"`
	// SLO are external checks the leader runs against its --prometheus at
	// each evaluation; a breach halts the rollout (docs/slo.md).
	SLO []SLORequest `json:"slo,omitempty"`
}

// StageRequest is one stage of a StartRequest; Bake is a duration such as
// "30m" ("" or "0s": no bake).
type StageRequest struct {
	Name     string   `json:"name"`
	Percent  float64  `json:"percent"`
	Hosts    []string `json:"hosts,omitempty"`
	Tags     []string `json:"tags,omitempty"`
	Bake     string   `json:"bake,omitempty"`
	MinHosts int      `json:"min_hosts"`
	// Wave exposes the first Wave of a stage's named hosts first
	// (controller.StageSpec.Wave); MinEvidence and MaxBake hold the stage
	// past its bake for the evidence, up to MaxBake ("4h").
	Wave        int     `json:"wave,omitempty"`
	MinEvidence float64 `json:"min_evidence,omitempty"`
	MaxBake     string  `json:"max_bake,omitempty"`
}

// Spec turns the request into a controller spec.
func (q StartRequest) Spec() (controller.Spec, error) {
	spec := controller.Spec{Channel: q.Channel, To: q.Version, From: q.From, Schedule: q.Schedule, ManualRollback: q.ManualRollback}
	for i, st := range q.Stages {
		bake, err := duration(fmt.Sprintf("stage %d (%s): bake", i+1, st.Name), st.Bake, true)
		if err != nil {
			return spec, err
		}
		maxBake, err := duration(fmt.Sprintf("stage %d (%s): max_bake", i+1, st.Name), st.MaxBake, true)
		if err != nil {
			return spec, err
		}
		spec.Stages = append(spec.Stages, controller.StageSpec{Name: st.Name, Percent: st.Percent, Hosts: st.Hosts, Tags: st.Tags, Bake: bake, MinHosts: st.MinHosts,
			Wave: st.Wave, MinEvidence: st.MinEvidence, MaxBake: maxBake})
	}
	if len(spec.Stages) == 0 && (len(q.CanaryHosts) > 0 || len(q.CanaryTags) > 0) {
		spec.Stages = controller.DefaultStages(q.Schedule, q.CanaryHosts, q.CanaryTags)
	}
	var err error
	if spec.HealthWindow, err = duration("health_window", q.HealthWindow, false); err != nil {
		return spec, err
	}
	if spec.Grace, err = duration("grace", q.Grace, false); err != nil {
		return spec, err
	}
	if spec.Silence, err = duration("silence", q.Silence, false); err != nil {
		return spec, err
	}
	if q.Alpha != 0 {
		spec.Gate = gate.Default()
		spec.Gate.Alpha = q.Alpha
	}
	if q.Promote != nil {
		spec.Promote = *q.Promote
	}
	for i, c := range q.SLO {
		check, err := c.check(i+1, q.Channel, q.Version)
		if err != nil {
			return spec, err
		}
		spec.SLO = append(spec.SLO, check)
	}
	return spec, nil
}

// duration reads a request's duration ("" is 0: the default); zero is
// allowed only where zeroOK.
func duration(what, s string, zeroOK bool) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 || v == 0 && !zeroOK {
		return 0, fmt.Errorf("%s %q is not a positive duration like 10m", what, s)
	}
	return v, nil
}

func decode(r *http.Request, v any) error {
	body, err := boundedio.ReadAll(r.Body, maxRequest)
	if err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}

func (s *Server) handleStart(w http.ResponseWriter, r *http.Request) {
	var q StartRequest
	if err := decode(r, &q); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	spec, err := q.Spec()
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	d, v, err := s.Start(spec, q.Who, q.Why)
	answerDecision(w, d, v, err)
}

// Start begins a rollout; the version must be published content, and its
// SLO checks, if it has any, must be able to run (checkSLO).
func (s *Server) Start(spec controller.Spec, who, why string) (controller.Decision, View, error) {
	if s.opts.ReadOnly {
		return controller.Decision{}, View{}, ErrReadOnly
	}
	if err := s.checkSLO(spec); err != nil { // queries Prometheus: before the lock
		return controller.Decision{}, View{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if who == "" {
		who = "operator"
	}
	repo, err := tufrepo.Open(s.opts.Repo, s.opts.Keys, s.clock) // as it is now: a publisher may have added the version
	if err != nil {
		return controller.Decision{}, View{}, fmt.Errorf("server: %w", err)
	}
	spec.Compat, err = repo.Constraint(spec.Channel, spec.To)
	if errors.Is(err, tufrepo.ErrNotPublished) {
		return controller.Decision{}, View{}, fmt.Errorf("%w: version %d is not published on channel %d; run 'ringfence-server publish' first", errBadRequest, spec.To, spec.Channel)
	}
	if err != nil {
		return controller.Decision{}, View{}, fmt.Errorf("%w: version %d of channel %d: %v; publish it again as a new version", errBadRequest, spec.To, spec.Channel, err)
	}
	var d controller.Decision
	_, err = s.change(func() ([]controller.Decision, error) {
		d, err = s.ctl.Start(spec, who, why, s.clock.Now())
		return []controller.Decision{d}, err
	})
	if err != nil {
		return controller.Decision{}, View{}, err
	}
	ro, _ := s.ctl.Rollout(spec.Channel)
	return d, s.view(ro), nil
}

var errBadRequest = errors.New("server")

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrStore):
		return http.StatusServiceUnavailable
	case errors.Is(err, controller.ErrNotFound), errors.Is(err, admission.ErrNotFound), errors.Is(err, controller.ErrNotAdmitted), errors.Is(err, errUnknownAction):
		return http.StatusNotFound
	case errors.Is(err, controller.ErrState), errors.Is(err, admission.ErrState):
		return http.StatusConflict
	case errors.Is(err, errBadRequest), errors.Is(err, slo.ErrInvalid):
		return http.StatusBadRequest
	case strings.HasPrefix(err.Error(), "controller:") || strings.HasPrefix(err.Error(), "gate:") || strings.HasPrefix(err.Error(), "admission:"):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// decisionResponse is what an operator's decision answers: the decision
// and the rollout after it.
type decisionResponse struct {
	Decision controller.Decision `json:"decision"`
	Rollout  View                `json:"rollout"`
}

// channelRequest reads a decision request on /v1/rollouts/{channel}/...:
// the channel from the path and the body into q. It answers the error
// itself and reports false when the request is malformed.
func channelRequest(w http.ResponseWriter, r *http.Request, q any) (uint32, bool) {
	ch, err := strconv.ParseUint(r.PathValue("channel"), 10, 32)
	if err != nil {
		httpError(w, http.StatusBadRequest, "channel must be a number")
		return 0, false
	}
	if err := decode(r, q); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return 0, false
	}
	return uint32(ch), true
}

// answerDecision answers a decision, or why it was refused.
func answerDecision(w http.ResponseWriter, d controller.Decision, v View, err error) {
	if err != nil {
		httpError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, decisionResponse{d, v})
}

func (s *Server) handleAction(w http.ResponseWriter, r *http.Request) {
	var q ActionRequest
	ch, ok := channelRequest(w, r, &q)
	if !ok {
		return
	}
	d, v, err := s.Act(ch, controller.Kind(r.PathValue("action")), q.Who, q.Why)
	answerDecision(w, d, v, err)
}

// Act applies an operator's action (pause, resume, halt, rollback,
// promote) and records who and why.
func (s *Server) Act(channel uint32, action controller.Kind, who, why string) (controller.Decision, View, error) {
	return s.decideOn(channel, func(now time.Time) (controller.Decision, error) {
		return s.ctl.Action(channel, action, who, why, now)
	})
}

// Allow takes a version off a channel's deny list, recording who and why.
func (s *Server) Allow(channel, version uint32, who, why string) (controller.Decision, View, error) {
	return s.decideOn(channel, func(now time.Time) (controller.Decision, error) {
		return s.ctl.Allow(channel, version, who, why, now)
	})
}

// decideOn commits one operator decision on a channel's rollout and
// returns it with the rollout after it.
func (s *Server) decideOn(channel uint32, decide func(time.Time) (controller.Decision, error)) (controller.Decision, View, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.ReadOnly {
		return controller.Decision{}, View{}, ErrReadOnly
	}
	var d controller.Decision
	_, err := s.change(func() ([]controller.Decision, error) {
		var err error
		d, err = decide(s.clock.Now())
		return []controller.Decision{d}, err
	})
	if err != nil {
		return controller.Decision{}, View{}, err
	}
	ro, _ := s.ctl.Rollout(channel)
	return d, s.view(ro), nil
}

// AllowRequest is the body of POST /v1/rollouts/{channel}/allow.
type AllowRequest struct {
	ActionRequest
	Version uint32 `json:"version"`
}

func (s *Server) handleAllow(w http.ResponseWriter, r *http.Request) {
	var q AllowRequest
	ch, ok := channelRequest(w, r, &q)
	if !ok {
		return
	}
	if q.Version == 0 {
		httpError(w, http.StatusBadRequest, "say which version to allow again (\"version\")")
		return
	}
	d, v, err := s.Allow(ch, q.Version, q.Who, q.Why)
	answerDecision(w, d, v, err)
}

// Status returns the view of every rollout.
func (s *Server) Status() []View {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status()
}

// status is Status with s.mu held.
func (s *Server) status() []View {
	out := []View{}
	for _, ro := range s.ctl.Rollouts() {
		out = append(out, s.view(ro))
	}
	return out
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

package controller

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"
	"unique"

	"github.com/ringfence/ringfence/compat"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/wire"
)

// Failure reasons the controller gives hosts that did not say they failed.
const (
	// FailureSilent: not heard from for the silence window.
	FailureSilent = "silent"
	// FailureNoHealthy: heard from, but no healthy report by the end of the
	// health window and grace.
	FailureNoHealthy = "no-healthy-report"
)

// Errors of the controller.
var (
	// ErrNotFound is returned for an action on a channel with no rollout.
	ErrNotFound = errors.New("controller: no rollout on that channel")
	// ErrState is returned for an action the rollout's state does not allow.
	ErrState = errors.New("controller: the rollout's state does not allow that")
	// ErrNotAdmitted is returned for a report or an action on a host the
	// fleet has not admitted.
	ErrNotAdmitted = errors.New("controller: the host is not in the fleet")
)

// Report is one admitted host's telemetry batch, as the controller needs it.
type Report struct {
	HostID string
	// Versions maps channel to the version the host runs; it replaces
	// what the host said before. Sensor and Manifest are its installed
	// sensor's version and manifest digest (wire.HostInfo).
	Versions         map[uint32]uint32
	Sensor, Manifest string
	Events           []Event
	// Health is the host's health sample from the batch (nil: none).
	Health *wire.Health
}

// Event is one telemetry event, as the controller needs it.
type Event struct {
	Seq     uint64
	Kind    wire.EventKind
	Channel uint32
	Version uint32
	Reason  string
}

// Ingested is what a batch did.
type Ingested struct {
	// Applied events took effect; Stale ones were at or below the host's
	// last applied seq (a replay or a resend) and changed nothing.
	Applied, Stale int
	// Decisions the batch caused at once (a halt by the canary rule, and
	// its rollback).
	Decisions []Decision
}

// Host is one admitted host as the server knows it. Fleet and Tags are the
// server's record (set at admission or by an operator), never what the
// host says of itself.
//
// The controller keeps its own compact record of each host (hostRec); a
// Host it returns is a copy, made when asked for.
type Host struct {
	Versions map[uint32]uint32 `json:"versions,omitempty"`
	// Tracks follow the host through each channel's current rollout.
	Tracks   []Track   `json:"tracks,omitempty"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	Bucket   int       `json:"bucket"`
	ID       string    `json:"id"`
	Fleet    string    `json:"fleet,omitempty"`
	Tags     []string  `json:"tags,omitempty"`
	Admitted time.Time `json:"admitted"`
	// AdmittedBy names who admitted it: an operator, or "token:<id>".
	AdmittedBy string `json:"admitted_by,omitempty"`
	// LastSeq is the highest event seq applied from the host: events at
	// or below it are a replay (wire.Event.Seq).
	LastSeq uint64 `json:"last_seq,omitempty"`
	// Sensor and Manifest are what the host last said of its installed
	// sensor ("": nothing, an older host). A rollout whose version is
	// constrained to some sensors leaves the host out unless Sensor is
	// one of them; the host enforces the constraint too.
	Sensor   string `json:"sensor,omitempty"`
	Manifest string `json:"manifest,omitempty"`
}

// Track is a host in one rollout: when it installed the new version, when
// it reported healthy, and its first failure on either side.
type Track struct {
	Channel       uint32    `json:"channel"`
	To            uint32    `json:"to"`
	Installed     time.Time `json:"installed,omitzero"`
	Healthy       time.Time `json:"healthy,omitzero"`
	Failed        time.Time `json:"failed,omitzero"` // on the new version
	Failure       string    `json:"failure,omitempty"`
	ControlFailed time.Time `json:"control_failed,omitzero"` // before it had the new version
	// Started is when it reported its trial started: it passed its load.
	Started time.Time `json:"started,omitzero"`
	// Judged is when the health test judged it (once, at the end of its
	// health window); Unhealthy names the figure beyond its limit, if one was.
	Judged    time.Time `json:"judged,omitzero"`
	Unhealthy string    `json:"unhealthy,omitempty"`
}

// Controller holds the fleet and the rollouts. It is not safe for
// concurrent use: the server serialises calls.
//
// Every change (Ingest, Evaluate, Start, Action, Allow, Admit, SetTags,
// Remove) is tentative until the caller settles it: Changes returns what
// changed, for the store to commit; Settle keeps it; Undo puts back the
// state as it was before the first change since the last Settle or Undo
// (before-images of every host and rollout touched). A server that commits
// first and settles only on success never shows, nor acts on, a state that
// is not on disk.
type Controller struct {
	// recs are the hosts, in one slice (a gate evaluation walks it in
	// order); index finds a host's record by id.
	recs     []hostRec
	index    hostIndex
	rollouts map[uint32]*Rollout
	// CanaryHosts and CanaryTags make the canary group of a rollout started
	// without its own stages.
	CanaryHosts, CanaryTags []string

	dirtyHosts    map[string]bool
	dirtyRollouts map[uint32]bool
	changedPlans  map[uint32]bool
	beforeHosts   map[string]hostBefore
	beforeRollout map[uint32]rolloutBefore
	named         map[uint32]*named // resolved stage membership, by channel
}

type hostBefore struct {
	val     hostRec
	existed bool
}

type rolloutBefore struct {
	ptr     *Rollout // nil: the channel had no rollout
	val     Rollout
	existed bool
}

// New returns a controller over the hosts and rollouts a store kept.
func New(hosts []*Host, rollouts []*Rollout) *Controller {
	c := &Controller{recs: make([]hostRec, 0, len(hosts)), index: newHostIndex(len(hosts)), rollouts: map[uint32]*Rollout{},
		dirtyHosts: map[string]bool{}, dirtyRollouts: map[uint32]bool{}, changedPlans: map[uint32]bool{},
		beforeHosts: map[string]hostBefore{}, beforeRollout: map[uint32]rolloutBefore{}, named: map[uint32]*named{}}
	for _, h := range hosts {
		h.Bucket = rollout.Bucket(h.ID)
		if r := c.rec(h.ID); r != nil {
			*r = recOf(h)
		} else {
			c.add(recOf(h))
		}
	}
	for _, r := range rollouts {
		c.rollouts[r.Channel] = r
	}
	return c
}

// rec returns the record of the host, or nil. The pointer is good until
// a host is added or removed.
func (c *Controller) rec(id string) *hostRec {
	if i := c.index.get(c.recs, id); i >= 0 {
		return &c.recs[i]
	}
	return nil
}

// add puts a record in the fleet (its id not in it).
func (c *Controller) add(h hostRec) {
	c.index.set(c.recs, h.id, len(c.recs))
	c.recs = append(c.recs, h)
}

// drop takes the host's record out of the fleet, if it is in it: the
// last record takes its place.
func (c *Controller) drop(id string) {
	i := c.index.get(c.recs, id)
	if i < 0 {
		return
	}
	c.index.del(c.recs, id)
	last := len(c.recs) - 1
	if i != last {
		c.recs[i] = c.recs[last]
		c.index.set(c.recs, c.recs[i].id, i)
	}
	c.recs[last] = hostRec{}
	c.recs = c.recs[:last]
}

// touchHost keeps h's before-image (once per change) and marks it to be
// persisted. Call it before changing h.
func (c *Controller) touchHost(h *hostRec) {
	if _, ok := c.beforeHosts[h.id]; !ok {
		c.beforeHosts[h.id] = hostBefore{val: h.clone(), existed: true}
	}
	c.dirtyHosts[h.id] = true
}

// touchRollout keeps the channel's rollout's before-image and marks it to
// be persisted. Call it before changing the rollout or replacing it.
func (c *Controller) touchRollout(ch uint32) {
	if _, ok := c.beforeRollout[ch]; !ok {
		r := c.rollouts[ch]
		b := rolloutBefore{ptr: r, existed: r != nil}
		if r != nil {
			b.val = r.clone()
		}
		c.beforeRollout[ch] = b
	}
	c.dirtyRollouts[ch] = true
}

// Changes are what a store must persist and the server must sign.
type Changes struct {
	Hosts    []*Host
	Rollouts []*Rollout
	// Removed are hosts that left the fleet: delete them.
	Removed []string
	// Plans are the channels whose plan changed: sign Plan(ch).
	Plans []uint32
}

// Empty reports whether nothing changed.
func (ch Changes) Empty() bool {
	return len(ch.Hosts) == 0 && len(ch.Rollouts) == 0 && len(ch.Removed) == 0 && len(ch.Plans) == 0
}

// Changes returns what changed since the last Settle or Undo.
func (c *Controller) Changes() Changes {
	var ch Changes
	for _, id := range slices.Sorted(maps.Keys(c.dirtyHosts)) {
		if h := c.rec(id); h != nil {
			ch.Hosts = append(ch.Hosts, h.host())
		} else {
			ch.Removed = append(ch.Removed, id)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(c.dirtyRollouts)) {
		ch.Rollouts = append(ch.Rollouts, c.rollouts[id])
	}
	ch.Plans = slices.Sorted(maps.Keys(c.changedPlans))
	return ch
}

// Settle keeps the pending changes (they are on disk).
func (c *Controller) Settle() {
	if len(c.dirtyHosts) > settleKeep {
		// A change that touched many hosts (an evaluation that found a
		// network partition silent, a load) must not keep its maps' room
		// for good: clear keeps it, and a before-image is a record.
		c.dirtyHosts, c.beforeHosts = map[string]bool{}, map[string]hostBefore{}
	}
	clear(c.dirtyHosts)
	clear(c.dirtyRollouts)
	clear(c.changedPlans)
	clear(c.beforeHosts)
	clear(c.beforeRollout)
}

// settleKeep is how many hosts' room Settle keeps in its maps.
const settleKeep = 1024

// Undo puts every host and rollout changed since the last Settle back as
// it was (they could not be stored).
func (c *Controller) Undo() {
	for id, b := range c.beforeHosts {
		switch h := c.rec(id); {
		case !b.existed:
			c.drop(id)
		case h != nil:
			*h = b.val
		default:
			c.add(b.val)
		}
	}
	for ch, b := range c.beforeRollout {
		if !b.existed {
			delete(c.rollouts, ch)
			continue
		}
		*b.ptr = b.val
		c.rollouts[ch] = b.ptr
	}
	clear(c.named)
	c.Settle()
}

// TakeChanges returns what changed and settles it (for callers that keep
// nothing on disk: the fleet simulator, tests).
func (c *Controller) TakeChanges() Changes {
	ch := c.Changes()
	c.Settle()
	return ch
}

// Rollout returns the channel's rollout (the latest, finished or not).
func (c *Controller) Rollout(channel uint32) (*Rollout, bool) {
	r, ok := c.rollouts[channel]
	return r, ok
}

// Rollouts returns every channel's latest rollout, by channel.
func (c *Controller) Rollouts() []*Rollout {
	out := slices.Collect(maps.Values(c.rollouts))
	sort.Slice(out, func(i, j int) bool { return out[i].Channel < out[j].Channel })
	return out
}

// Host returns an admitted host: a copy, which later changes to the fleet
// leave as it is.
func (c *Controller) Host(id string) (*Host, bool) {
	h := c.rec(id)
	if h == nil {
		return nil, false
	}
	return h.host(), true
}

// Known reports whether the host is in the fleet.
func (c *Controller) Known(id string) bool { return c.rec(id) != nil }

// Hosts returns the number of hosts in the fleet.
func (c *Controller) Hosts() int { return len(c.recs) }

// HostList returns the fleet's hosts (not to be changed by the caller:
// hosts on the same versions share one Versions map, hosts with the same
// tags one Tags slice). They are copies, made for the call, which later
// changes to the fleet leave as they are; a Host per host of the fleet:
// to list a page of it, HostsAfter makes only the hosts it returns.
func (c *Controller) HostList() []*Host {
	hosts := make([]Host, len(c.recs))
	out := make([]*Host, len(c.recs))
	sh := &shared{versions: map[unique.Handle[string]]map[uint32]uint32{}, tags: map[unique.Handle[profile]][]string{}}
	for i := range c.recs {
		c.recs[i].fill(&hosts[i], sh)
		out[i] = &hosts[i]
	}
	return out
}

// HostsAfter returns at most limit hosts whose ids come after after, by id
// (copies): a page of the fleet, made without copying the rest of it.
func (c *Controller) HostsAfter(after string, limit int) []*Host {
	if limit <= 0 {
		return nil
	}
	var page []int // indexes of recs, by id
	for i := range c.recs {
		id := c.recs[i].id
		if id <= after || len(page) == limit && id >= c.recs[page[limit-1]].id {
			continue
		}
		j, _ := slices.BinarySearchFunc(page, id, func(k int, id string) int { return cmp.Compare(c.recs[k].id, id) })
		page = slices.Insert(page, j, i)
		if len(page) > limit {
			page = page[:limit]
		}
	}
	out := make([]*Host, len(page))
	for j, i := range page {
		out[j] = c.recs[i].host()
	}
	return out
}

// Versions counts hosts per running version of a channel.
func (c *Controller) Versions(channel uint32) map[uint32]int {
	out := map[uint32]int{}
	for i := range c.recs {
		if v, ok := c.recs[i].version(channel); ok {
			out[v]++
		}
	}
	return out
}

// Sensors counts the fleet's hosts per installed sensor version, as they
// last said ("" for hosts that have not).
func (c *Controller) Sensors() map[string]int {
	out := map[string]int{}
	for i := range c.recs {
		out[c.recs[i].sensor.Value().sensor]++
	}
	return out
}

// SensorsOn is Sensors for the hosts on a channel.
func (c *Controller) SensorsOn(channel uint32) map[string]int {
	out := map[string]int{}
	for i := range c.recs {
		if _, on := c.recs[i].version(channel); on {
			out[c.recs[i].sensor.Value().sensor]++
		}
	}
	return out
}

// StageSizes counts the known hosts of a channel in each stage of its
// rollout (each host in the first stage that includes it).
func (c *Controller) StageSizes(channel uint32) []int {
	r, ok := c.rollouts[channel]
	if !ok {
		return nil
	}
	out := make([]int, len(r.Stages))
	g := c.rings(r)
	for k := range c.recs {
		h := &c.recs[k]
		if _, on := h.version(channel); !on {
			continue
		}
		if i := g.of(h); i >= 0 {
			out[i]++
		}
	}
	return out
}

// Plan is the plan to sign for the channel's rollout, its stages naming
// the hosts the server's records put in them.
func (c *Controller) Plan(channel uint32) *rollout.Plan {
	r, ok := c.rollouts[channel]
	if !ok {
		return nil
	}
	return r.Plan(c.namedOf(r).lists)
}

// rings answers which stage a host is in, fast: the bucket limit of each
// stage is computed once per fleet walk, and stages that name hosts look
// them up in the resolved membership.
type rings struct {
	limits []int
	named  *named
	compat compat.Constraint
}

func (c *Controller) rings(r *Rollout) rings {
	g := rings{limits: make([]int, len(r.Stages)), named: c.namedOf(r), compat: r.Compat}
	for i, s := range r.Stages {
		g.limits[i] = rollout.Stage{Percent: s.Percent}.BucketLimit()
	}
	return g
}

// of returns the index of the first stage h is in, or -1 (also for a host
// whose sensor the version's constraint does not allow).
func (g rings) of(h *hostRec) int {
	if !g.compat.Any() && !g.compat.Allows(h.sensor.Value().sensor) {
		return -1
	}
	for i, lim := range g.limits {
		if int(h.bucket) < lim || g.named.sets[i] != nil && g.named.sets[i][h.id] {
			return i
		}
	}
	return -1
}

// given reports whether the signed plan gives r's new version to h: h is
// in a stage up to the current one.
func (g rings) given(r *Rollout, h *hostRec) bool {
	s := g.of(h)
	return s >= 0 && s <= r.Stage
}

// Current is the version the channel's hosts should run when no rollout
// moves them: the last completed rollout's version, the version a rolled
// back one started from, or else the version most known hosts run.
func (c *Controller) Current(channel uint32) uint32 {
	if r, ok := c.rollouts[channel]; ok {
		switch r.State {
		case StateCompleted:
			return r.To
		default:
			return r.From
		}
	}
	best, n := uint32(0), 0
	for v, k := range c.Versions(channel) {
		if k > n || k == n && v > best {
			best, n = v, k
		}
	}
	return best
}

// Ingest applies one admitted host's batch at time now (the server's
// clock: hosts' clocks are not trusted for the gate). Events at or below
// the host's last applied seq are stale; a batch with no fresh event has
// no effect at all (a replayed old batch neither moves the host back a
// version nor refreshes its last-seen time).
//
// A report counts toward a rollout only where the signed plan gave the new
// version to the host's stage: a host that runs it for another reason (a
// local pin, a claim) counts on neither side.
func (c *Controller) Ingest(rep Report, now time.Time) (Ingested, error) {
	h := c.rec(rep.HostID)
	if h == nil {
		return Ingested{}, fmt.Errorf("%w: %s", ErrNotAdmitted, rep.HostID)
	}
	var out Ingested
	last := h.lastSeq
	fresh := make([]Event, 0, len(rep.Events))
	for _, e := range rep.Events {
		if e.Seq <= h.lastSeq {
			out.Stale++
			continue
		}
		fresh = append(fresh, e)
		last = max(last, e.Seq)
	}
	out.Applied = len(fresh)
	if len(fresh) == 0 {
		return out, nil
	}
	c.touchHost(h)
	h.lastSeq, h.lastSeen = last, now
	if s := (sensorInfo{rep.Sensor, rep.Manifest}); h.sensor.Value() != s {
		h.sensor = unique.Make(s)
	}
	// The batch's versions replace the host's (a host that never said
	// any, and says none, keeps none).
	if h.vers != noVersions || len(rep.Versions) > 0 {
		h.vers = versionsKey(rep.Versions)
	}
	if hh := healthOf(rep.Health, now); hh != nil {
		h.health = *hh
	}

	for _, ch := range slices.Sorted(maps.Keys(c.rollouts)) {
		r := c.rollouts[ch]
		if !r.Active() {
			continue
		}
		if excluded(r, h) {
			continue // its sensor is outside the version's constraint: outside the rollout
		}
		g := c.rings(r)
		given := g.given(r, h)
		running, on := h.version(r.Channel)
		var tr *Track
		if on && running == r.To && given {
			// The new version runs here, whatever events were lost.
			tr = h.track(r.Channel, r.To)
			if tr.Installed.IsZero() {
				tr.Installed = now
			}
		}
		for _, e := range fresh {
			if e.Channel != r.Channel && !(e.Channel == 0 && on) {
				continue
			}
			switch e.Kind {
			case wire.EventInstalled, wire.EventTrialStarted, wire.EventHealthy, wire.EventReverted, wire.EventQuarantined,
				wire.EventRejectedValidation, wire.EventRejectedPreflight, wire.EventSensorCrashed:
			default:
				continue // heartbeats and the rest: the running version above says it all
			}
			v := e.Version
			if v == 0 {
				v = running
			}
			if v == r.To && !given {
				continue // off the plan: counts nowhere
			}
			if tr == nil {
				tr = h.track(r.Channel, r.To)
			}
			switch e.Kind {
			case wire.EventInstalled, wire.EventTrialStarted:
				if v == r.To && tr.Installed.IsZero() {
					tr.Installed = now
				}
				if v == r.To && e.Kind == wire.EventTrialStarted && tr.Started.IsZero() {
					tr.Started = now
				}
			case wire.EventHealthy:
				if v == r.To {
					if tr.Installed.IsZero() {
						tr.Installed = now
					}
					if tr.Started.IsZero() {
						tr.Started = now
					}
					if tr.Healthy.IsZero() {
						tr.Healthy = now
					}
				}
			case wire.EventReverted, wire.EventQuarantined, wire.EventRejectedValidation, wire.EventRejectedPreflight:
				if v != r.To {
					continue
				}
				if tr.Installed.IsZero() {
					tr.Installed = now // it took the update, whatever it made of it
				}
				reason := e.Kind.String()
				if e.Reason != "" {
					reason += ": " + wire.Cut(e.Reason, wire.MaxReasonLen)
				}
				c.failTreated(r, tr, reason, now)
				if c.inCanary(r, h) {
					c.touchRollout(r.Channel)
					out.Decisions = append(out.Decisions, c.note(r, r.CanaryFailure(func() Counts { return c.count(r, now) }, now, h.id, reason))...)
				}
			case wire.EventSensorCrashed:
				if v == r.To || !tr.Installed.IsZero() && tr.Failed.IsZero() {
					if tr.Installed.IsZero() {
						tr.Installed = now
					}
					c.failTreated(r, tr, wire.EventSensorCrashed.String(), now)
				} else if tr.Installed.IsZero() && tr.ControlFailed.IsZero() {
					tr.ControlFailed = now
					c.touchRollout(r.Channel)
					r.Counts.ControlFailures++
				}
			}
		}
	}
	return out, nil
}

// excluded reports whether h is outside r because of its sensor: the
// version's constraint does not allow it, and it has not taken the version
// anyway on r's plan (a host that did, then said another sensor, stays
// treated: what it did with the version counts).
func excluded(r *Rollout, h *hostRec) bool {
	if r.Compat.Any() || r.Compat.Allows(h.sensor.Value().sensor) {
		return false
	}
	tr := h.peek(r.Channel, r.To)
	return tr == nil || tr.Installed.IsZero()
}

func (c *Controller) failTreated(r *Rollout, tr *Track, reason string, now time.Time) {
	if !tr.Failed.IsZero() {
		return
	}
	tr.Failed, tr.Failure = now, reason
	c.touchRollout(r.Channel)
	r.Counts.TreatedFailures++
}

// inCanary reports whether h is in the rollout's canary group: the first
// stage, when it names hosts or tags rather than a percentage.
func (c *Controller) inCanary(r *Rollout, h *hostRec) bool {
	if len(r.Stages) == 0 || r.Stages[0].Percent != 0 {
		return false
	}
	return c.rings(r).of(h) == 0
}

// Evaluate runs every active rollout's gate and stage rules at now and
// returns the decisions made.
func (c *Controller) Evaluate(now time.Time) []Decision {
	var out []Decision
	for _, ch := range slices.Sorted(maps.Keys(c.rollouts)) {
		out = append(out, c.evaluate(c.rollouts[ch], now)...)
	}
	return out
}

func (c *Controller) evaluate(r *Rollout, now time.Time) []Decision {
	if r.State != StateRunning && r.State != StatePaused {
		return nil
	}
	cnt := c.count(r, now)
	c.touchRollout(r.Channel)
	r.Observe(cnt, now)
	return c.note(r, r.Step(now))
}

// note marks what decisions changed: the rollout always, its plan when a
// decision moved hosts.
func (c *Controller) note(r *Rollout, ds []Decision) []Decision {
	c.dirtyRollouts[r.Channel] = true
	for _, d := range ds {
		if MovesHosts(d.Kind) {
			c.changedPlans[r.Channel] = true
		}
	}
	return ds
}

// count walks the fleet for r at now: it marks silent hosts failed and
// counts both groups and the current stage.
func (c *Controller) count(r *Rollout, now time.Time) Counts {
	var cnt Counts
	cnt.TreatedFailures, cnt.ControlFailures = r.Counts.TreatedFailures, r.Counts.ControlFailures
	cnt.TreatedSilent, cnt.ControlSilent = r.Counts.TreatedSilent, r.Counts.ControlSilent
	cnt.TreatedJudged, cnt.TreatedUnhealthy = r.Counts.TreatedJudged, r.Counts.TreatedUnhealthy
	lims := r.HealthLimits
	var hist histogram
	// The limits are drawn from at most about histSample controls: a
	// quantile of a hundred thousand is as good as of ten million, and
	// the walk stays cheap; P0 counts every control against them.
	stride := max(1, len(c.recs)/histSample)
	var judge []*hostRec // treated hosts due for judgement: after the walk, once P0 is known
	limit := 0
	if r.Stage < len(r.Stages) {
		limit = r.Stage
	}
	g := c.rings(r)
	// Alive is heard from within the silence window: now.Sub(lastSeen) <=
	// Silence, which is lastSeen not before now-Silence (and a comparison
	// costs less than a subtraction, a million times).
	heard := now.Add(-r.Silence)
	heardNano := heard.UnixNano()
	vs := versionOf{channel: r.Channel}
	for i := range c.recs {
		h := &c.recs[i]
		running, on := vs.of(h)
		tr := h.peek(r.Channel, r.To)
		if !on && tr == nil {
			continue
		}
		treated := tr != nil && !tr.Installed.IsZero()
		if on && running == r.To && !treated {
			if !g.given(r, h) {
				cnt.OffPlan++ // runs it, but the plan did not give it: neither side
			}
			continue
		}
		if !treated && excluded(r, h) {
			cnt.Excluded++
			continue
		}
		alive := !h.lastSeen.Before(heard)
		if treated {
			// Silence is judged alike on both sides (a host unheard for the
			// silence window), so that hosts dropping off the network for
			// reasons of their own weigh the same in both groups. A treated
			// host that is heard from but has not reported healthy by the
			// end of its health window and grace is failing its trial.
			failure := ""
			switch {
			case !tr.Failed.IsZero():
			case !alive:
				failure = FailureSilent
			case tr.Healthy.IsZero() && now.Sub(tr.Installed) > r.HealthWindow+r.Grace && h.lastSeen.After(tr.Installed.Add(r.HealthWindow)):
				failure = FailureNoHealthy
			}
			if failure != "" {
				c.touchHost(h)
				tr = h.peek(r.Channel, r.To)
				tr.Failed, tr.Failure = now, failure
				cnt.TreatedFailures++
				if failure == FailureSilent {
					cnt.TreatedSilent++
				}
			}
			if tr.Failed.IsZero() {
				cnt.TreatedAtRisk++
				if lims != nil && tr.Judged.IsZero() && h.health.at != 0 && running == r.To && h.health.at >= tr.Installed.Add(r.HealthWindow).UnixNano() {
					judge = append(judge, h)
				}
			}
		} else {
			if h.lastSeen.Before(r.Started) {
				continue // not heard from during the rollout: not at risk
			}
			if !alive {
				if tr == nil || tr.ControlFailed.IsZero() {
					c.touchHost(h)
					tr = h.track(r.Channel, r.To)
					tr.ControlFailed = now
					cnt.ControlFailures++
					cnt.ControlSilent++
				}
			} else if tr == nil || tr.ControlFailed.IsZero() {
				cnt.ControlAtRisk++
			}
			// Only controls that run the version the rollout starts from
			// set the limits and p0: a host with no content on the channel
			// (a first rollout, a new channel) evaluates nothing there, and
			// its figures say nothing of what content costs. A rollout from
			// no content has no health test.
			if alive && r.From != 0 && on && running == r.From && h.health.at != 0 && h.health.at >= heardNano {
				if i%stride == 0 {
					hist.add(&h.health)
				}
				cnt.ControlSampled++
				if lims != nil && lims.unhealthy(&h.health) >= 0 {
					cnt.ControlUnhealthy++
				}
			}
		}
		if !alive {
			continue
		}
		if stage := g.of(h); stage >= 0 && stage <= limit {
			cnt.StageHosts++
			if tr != nil && !tr.Healthy.IsZero() && tr.Failed.IsZero() && running == r.To {
				cnt.Healthy++
			}
			if r.FirstWave && stage == r.Stage {
				cnt.WaveHosts++
				if tr != nil && !tr.Started.IsZero() {
					cnt.WaveLoaded++
				}
			}
		}
	}
	// The health test: each treated host due is judged once, against the
	// limits the controls set at the last evaluation, with P0 from the
	// controls against the same limits now.
	if lims != nil && cnt.ControlSampled > 0 {
		cnt.HealthP0 = healthP0(cnt.ControlUnhealthy, cnt.ControlSampled)
		for _, h := range judge {
			c.touchHost(h)
			tr := h.peek(r.Channel, r.To)
			tr.Judged = now
			cnt.TreatedJudged++
			if i := lims.unhealthy(&h.health); i >= 0 {
				tr.Unhealthy = metricNames[i]
				cnt.TreatedUnhealthy++
			}
		}
	}
	r.HealthLimits = hist.limits()
	cnt.Treated = cnt.TreatedAtRisk + cnt.TreatedFailures
	cnt.Control = cnt.ControlAtRisk + cnt.ControlFailures
	return cnt
}

// Start begins a rollout of spec.To on spec.Channel. spec.From defaults to
// Current(channel). A channel has one rollout at a time: an active one must
// be rolled back or completed first; a denied version never starts again
// unless an operator allows it (Allow).
func (c *Controller) Start(spec Spec, actor, why string, now time.Time) (Decision, error) {
	var deny []uint32
	if old, ok := c.rollouts[spec.Channel]; ok {
		if old.Active() {
			return Decision{}, fmt.Errorf("%w: channel %d is rolling out version %d (%s); roll it back or let it complete first", ErrState, old.Channel, old.To, old.State)
		}
		deny = old.Deny
	}
	if spec.From == 0 {
		spec.From = c.Current(spec.Channel)
	}
	r, d, err := NewRollout(spec, c.CanaryHosts, c.CanaryTags, deny, actor, why, now)
	if err != nil {
		return Decision{}, err
	}
	c.touchRollout(spec.Channel)
	c.rollouts[spec.Channel] = r
	delete(c.named, spec.Channel)
	c.note(r, []Decision{d})
	return d, nil
}

// Action is an operator's action on a channel's rollout (Rollout.Act).
func (c *Controller) Action(channel uint32, kind Kind, actor, why string, now time.Time) (Decision, error) {
	r, ok := c.rollouts[channel]
	if !ok {
		return Decision{}, fmt.Errorf("%w %d", ErrNotFound, channel)
	}
	c.touchRollout(channel)
	d, err := r.Act(kind, actor, why, now)
	if err != nil {
		return d, err
	}
	c.note(r, []Decision{d})
	return d, nil
}

// Allow takes a version off a channel's deny list (Rollout.Allow).
func (c *Controller) Allow(channel, version uint32, actor, why string, now time.Time) (Decision, error) {
	r, ok := c.rollouts[channel]
	if !ok {
		return Decision{}, fmt.Errorf("%w %d", ErrNotFound, channel)
	}
	c.touchRollout(channel)
	d, err := r.Allow(version, actor, why, now)
	if err != nil {
		return d, err
	}
	c.note(r, []Decision{d})
	return d, nil
}

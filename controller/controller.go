package controller

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/ringfence/ringfence/rollout"
)

// Event types the controller reads (the host daemon's telemetry types).
const (
	EventInstalled          = "installed"
	EventTrialStarted       = "trial-started"
	EventHealthy            = "healthy"
	EventReverted           = "reverted"
	EventQuarantined        = "quarantined"
	EventRejectedValidation = "rejected-validation"
	EventRejectedPreflight  = "rejected-preflight"
	EventSensorCrashed      = "sensor-crashed"
)

// Failure reasons the controller gives hosts that did not say they failed.
const (
	// FailureSilent: not heard from for the silence window.
	FailureSilent = "silent"
	// FailureNoHealthy: heard from, but no healthy report by the end of the
	// health window and grace.
	FailureNoHealthy = "no-healthy-report"
)

// ErrNotFound is returned for an action on a channel with no rollout.
var ErrNotFound = errors.New("controller: no rollout on that channel")

// ErrState is returned for an action the rollout's state does not allow.
var ErrState = errors.New("controller: the rollout's state does not allow that")

// Report is one host's telemetry batch, as the controller needs it.
type Report struct {
	HostID   string
	Tags     []string
	Versions map[uint32]uint32 // channel -> the version the host runs
	Events   []Event
}

// Event is one telemetry event, as the controller needs it.
type Event struct {
	Type    string
	Channel uint32
	Version uint32
	Reason  string
}

// Host is one host as the server knows it.
type Host struct {
	ID       string            `json:"id"`
	Tags     []string          `json:"tags,omitempty"`
	Bucket   int               `json:"bucket"`
	LastSeen time.Time         `json:"last_seen"`
	Versions map[uint32]uint32 `json:"versions,omitempty"`
	// Tracks follow the host through each channel's current rollout.
	Tracks []Track `json:"tracks,omitempty"`
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
}

func (h *Host) track(channel, to uint32) *Track {
	for i := range h.Tracks {
		if h.Tracks[i].Channel == channel {
			if h.Tracks[i].To != to {
				h.Tracks[i] = Track{Channel: channel, To: to}
			}
			return &h.Tracks[i]
		}
	}
	h.Tracks = append(h.Tracks, Track{Channel: channel, To: to})
	return &h.Tracks[len(h.Tracks)-1]
}

// peek returns the host's track in the rollout, or nil.
func (h *Host) peek(channel, to uint32) *Track {
	for i := range h.Tracks {
		if h.Tracks[i].Channel == channel && h.Tracks[i].To == to {
			return &h.Tracks[i]
		}
	}
	return nil
}

func (h *Host) planHost() rollout.Host { return rollout.Host{ID: h.ID, Tags: h.Tags} }

// Controller holds the fleet and the rollouts. It is not safe for
// concurrent use: the server serialises calls.
type Controller struct {
	hosts    map[string]*Host
	list     []*Host // the same hosts: a slice walks a million hosts several times faster than a map
	rollouts map[uint32]*Rollout
	// CanaryHosts and CanaryTags make the canary group of a rollout started
	// without its own stages.
	CanaryHosts, CanaryTags []string

	dirtyHosts    map[string]bool
	dirtyRollouts map[uint32]bool
	changedPlans  map[uint32]bool
}

// New returns a controller over the hosts and rollouts a store kept.
func New(hosts []*Host, rollouts []*Rollout) *Controller {
	c := &Controller{hosts: make(map[string]*Host, len(hosts)), rollouts: map[uint32]*Rollout{},
		dirtyHosts: map[string]bool{}, dirtyRollouts: map[uint32]bool{}, changedPlans: map[uint32]bool{}}
	for _, h := range hosts {
		h.Bucket = rollout.Bucket(h.ID)
		if c.hosts[h.ID] == nil {
			c.list = append(c.list, h)
		}
		c.hosts[h.ID] = h
	}
	for _, r := range rollouts {
		c.rollouts[r.Channel] = r
	}
	return c
}

// Changes are what a store must persist and the server must sign since the
// last call of TakeChanges.
type Changes struct {
	Hosts    []*Host
	Rollouts []*Rollout
	// Plans are the channels whose plan changed: sign Rollout(ch).Plan().
	Plans []uint32
}

// TakeChanges returns and forgets what changed.
func (c *Controller) TakeChanges() Changes {
	var ch Changes
	for id := range c.dirtyHosts {
		ch.Hosts = append(ch.Hosts, c.hosts[id])
	}
	for id := range c.dirtyRollouts {
		ch.Rollouts = append(ch.Rollouts, c.rollouts[id])
	}
	ch.Plans = slices.Sorted(maps.Keys(c.changedPlans))
	clear(c.dirtyHosts)
	clear(c.dirtyRollouts)
	clear(c.changedPlans)
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

// Known reports whether the host has reported before.
func (c *Controller) Known(id string) bool { return c.hosts[id] != nil }

// Hosts returns the number of hosts known.
func (c *Controller) Hosts() int { return len(c.hosts) }

// Versions counts hosts per running version of a channel.
func (c *Controller) Versions(channel uint32) map[uint32]int {
	out := map[uint32]int{}
	for _, h := range c.list {
		if v, ok := h.Versions[channel]; ok {
			out[v]++
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
	g := r.rings()
	for _, h := range c.list {
		if _, on := h.Versions[channel]; !on {
			continue
		}
		if i := g.of(h); i >= 0 {
			out[i]++
		}
	}
	return out
}

// rings answers which stage a host is in, fast: the bucket limit of each
// stage is computed once per fleet walk, and only stages that list hosts or
// tags look at them.
type rings struct {
	stages   []rollout.Stage
	limits   []int
	explicit []bool
}

func (r *Rollout) rings() rings {
	g := rings{stages: make([]rollout.Stage, len(r.Stages)), limits: make([]int, len(r.Stages)), explicit: make([]bool, len(r.Stages))}
	for i := range r.Stages {
		g.stages[i] = r.planStage(i, r.To)
		g.limits[i] = g.stages[i].BucketLimit()
		g.explicit[i] = len(g.stages[i].Hosts) > 0 || len(g.stages[i].Tags) > 0
	}
	return g
}

// of returns the index of the first stage h is in, or -1.
func (g rings) of(h *Host) int {
	for i, lim := range g.limits {
		if h.Bucket < lim || g.explicit[i] && g.stages[i].ContainsBucket(h.planHost(), h.Bucket) {
			return i
		}
	}
	return -1
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

// Ingest applies one host's batch at time now (the server's clock: hosts'
// clocks are not trusted for the gate). It returns the decisions the batch
// caused at once (a halt by the canary rule, and its rollback).
func (c *Controller) Ingest(rep Report, now time.Time) []Decision {
	h := c.hosts[rep.HostID]
	if h == nil {
		h = &Host{ID: rep.HostID, Bucket: rollout.Bucket(rep.HostID)}
		c.hosts[rep.HostID] = h
		c.list = append(c.list, h)
	}
	h.LastSeen = now
	if rep.Tags != nil {
		h.Tags = rep.Tags
	}
	if len(rep.Versions) > 0 {
		if h.Versions == nil {
			h.Versions = map[uint32]uint32{}
		}
		maps.Copy(h.Versions, rep.Versions)
	}
	c.dirtyHosts[h.ID] = true

	var out []Decision
	for _, r := range c.rollouts {
		if !r.Active() {
			continue
		}
		running, on := h.Versions[r.Channel]
		var tr *Track
		if on && running == r.To {
			// The new version runs here, whatever events were lost.
			tr = h.track(r.Channel, r.To)
			if tr.Installed.IsZero() {
				tr.Installed = now
			}
		}
		for _, e := range rep.Events {
			if e.Channel != r.Channel && !(e.Channel == 0 && on) {
				continue
			}
			switch e.Type {
			case EventInstalled, EventTrialStarted, EventHealthy, EventReverted, EventQuarantined,
				EventRejectedValidation, EventRejectedPreflight, EventSensorCrashed:
			default:
				continue // heartbeats and the rest: the running version above says it all
			}
			v := e.Version
			if v == 0 {
				v = running
			}
			if tr == nil {
				tr = h.track(r.Channel, r.To)
			}
			switch e.Type {
			case EventInstalled, EventTrialStarted:
				if v == r.To && tr.Installed.IsZero() {
					tr.Installed = now
				}
			case EventHealthy:
				if v == r.To {
					if tr.Installed.IsZero() {
						tr.Installed = now
					}
					if tr.Healthy.IsZero() {
						tr.Healthy = now
					}
				}
			case EventReverted, EventQuarantined, EventRejectedValidation, EventRejectedPreflight:
				if v != r.To {
					continue
				}
				if tr.Installed.IsZero() {
					tr.Installed = now // it took the update, whatever it made of it
				}
				reason := e.Type
				if e.Reason != "" {
					reason += ": " + e.Reason
				}
				c.failTreated(r, tr, reason, now)
				if r.inCanary(h) {
					out = append(out, c.note(r, r.CanaryFailure(func() Counts { return c.count(r, now) }, now, h.ID, reason))...)
				}
			case EventSensorCrashed:
				if v == r.To || !tr.Installed.IsZero() && tr.Failed.IsZero() {
					if tr.Installed.IsZero() {
						tr.Installed = now
					}
					c.failTreated(r, tr, "sensor-crashed", now)
				} else if tr.Installed.IsZero() && tr.ControlFailed.IsZero() {
					tr.ControlFailed = now
					r.Counts.ControlFailures++
					c.dirtyRollouts[r.Channel] = true
				}
			}
		}
	}
	return out
}

func (c *Controller) failTreated(r *Rollout, tr *Track, reason string, now time.Time) {
	if !tr.Failed.IsZero() {
		return
	}
	tr.Failed, tr.Failure = now, reason
	r.Counts.TreatedFailures++
	c.dirtyRollouts[r.Channel] = true
}

// inCanary reports whether h is in the rollout's canary group: the first
// stage, when it names hosts or tags rather than a percentage.
func (r *Rollout) inCanary(h *Host) bool {
	if len(r.Stages) == 0 || r.Stages[0].Percent != 0 {
		return false
	}
	return r.planStage(0, r.To).ContainsBucket(h.planHost(), h.Bucket)
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
	r.Observe(c.count(r, now), now)
	c.dirtyRollouts[r.Channel] = true
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
	limit := 0
	if r.Stage < len(r.Stages) {
		limit = r.Stage
	}
	g := r.rings()
	for _, h := range c.list {
		running, on := h.Versions[r.Channel]
		tr := h.peek(r.Channel, r.To)
		if !on && tr == nil {
			continue
		}
		alive := now.Sub(h.LastSeen) <= r.Silence
		if tr != nil && !tr.Installed.IsZero() {
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
			case tr.Healthy.IsZero() && now.Sub(tr.Installed) > r.HealthWindow+r.Grace && h.LastSeen.After(tr.Installed.Add(r.HealthWindow)):
				failure = FailureNoHealthy
			}
			if failure != "" {
				tr.Failed, tr.Failure = now, failure
				cnt.TreatedFailures++
				if failure == FailureSilent {
					cnt.TreatedSilent++
				}
				c.dirtyHosts[h.ID] = true
			}
			if tr.Failed.IsZero() {
				cnt.TreatedAtRisk++
			}
		} else {
			if h.LastSeen.Before(r.Started) {
				continue // not heard from during the rollout: not at risk
			}
			if !alive {
				if tr == nil {
					tr = h.track(r.Channel, r.To)
				}
				if tr.ControlFailed.IsZero() {
					tr.ControlFailed = now
					cnt.ControlFailures++
					cnt.ControlSilent++
					c.dirtyHosts[h.ID] = true
				}
			} else if tr == nil || tr.ControlFailed.IsZero() {
				cnt.ControlAtRisk++
			}
		}
		if !alive {
			continue
		}
		if s := g.of(h); s >= 0 && s <= limit {
			cnt.StageHosts++
			if tr != nil && !tr.Healthy.IsZero() && tr.Failed.IsZero() && running == r.To {
				cnt.Healthy++
			}
		}
	}
	cnt.Treated = cnt.TreatedAtRisk + cnt.TreatedFailures
	cnt.Control = cnt.ControlAtRisk + cnt.ControlFailures
	return cnt
}

// Start begins a rollout of spec.To on spec.Channel. spec.From defaults to
// Current(channel). A channel has one rollout at a time: an active one must
// be rolled back or completed first; a denied version never starts again.
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
	c.rollouts[spec.Channel] = r
	c.note(r, []Decision{d})
	return d, nil
}

// Action is an operator's action on a channel's rollout (Rollout.Act).
func (c *Controller) Action(channel uint32, kind, actor, why string, now time.Time) (Decision, error) {
	r, ok := c.rollouts[channel]
	if !ok {
		return Decision{}, fmt.Errorf("%w %d", ErrNotFound, channel)
	}
	d, err := r.Act(kind, actor, why, now)
	if err != nil {
		return d, err
	}
	c.note(r, []Decision{d})
	return d, nil
}

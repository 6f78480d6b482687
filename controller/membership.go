package controller

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
	"unique"

	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/wire"
)

// This file is the fleet's membership: which hosts are in it (admitted by
// the server, never by their own say), their fleet and tags, and which
// hosts each rollout's named stages hold.

// Bounds of membership.
const (
	// MaxStageHosts bounds the hosts one stage names in the signed plan (a
	// plan is at most rollout.MaxSize): a larger group is a percentage.
	MaxStageHosts = 10_000
	// MaxHostTags bounds the tags an operator gives one host.
	MaxHostTags = wire.MaxTags
)

// named is a rollout's stages resolved against the server's records: for
// each stage, the hosts it names (the spec's host ids and every admitted
// host with one of the spec's tags), sorted, at most MaxStageHosts; nil
// for a stage that names none.
type named struct {
	lists [][]string
	sets  []map[string]bool
	// over counts the hosts a stage's tags matched beyond MaxStageHosts
	// (left out of the plan and of the stage).
	over []int
	// wave is the stage whose list is cut to its first wave (-1: none).
	wave int
}

// namedOf resolves r's named stages (cached until membership changes).
func (c *Controller) namedOf(r *Rollout) *named {
	wave := -1
	if r.FirstWave && r.Stage < len(r.Stages) {
		wave = r.Stage
	}
	if n := c.named[r.Channel]; n != nil && len(n.lists) == len(r.Stages) && n.wave == wave {
		return n
	}
	n := &named{lists: make([][]string, len(r.Stages)), sets: make([]map[string]bool, len(r.Stages)), over: make([]int, len(r.Stages)), wave: wave}
	for i, s := range r.Stages {
		if len(s.Hosts) == 0 && len(s.Tags) == 0 {
			continue
		}
		set := map[string]bool{}
		for _, id := range s.Hosts {
			set[id] = true
		}
		if len(s.Tags) > 0 {
			// Hosts share profiles (fleet, admitter, tags): look each up once.
			has := map[unique.Handle[profile]]bool{}
			for k := range c.recs {
				h := &c.recs[k]
				in, ok := has[h.prof]
				if !ok {
					in = h.prof.Value().hasAny(s.Tags)
					has[h.prof] = in
				}
				if in {
					set[h.id] = true
				}
			}
		}
		list := slices.Sorted(maps.Keys(set))
		if len(list) > MaxStageHosts {
			n.over[i] = len(list) - MaxStageHosts
			for _, id := range list[MaxStageHosts:] {
				delete(set, id)
			}
			list = list[:MaxStageHosts]
		}
		if i == wave && len(list) > s.Wave {
			// The first wave: the hosts of the lowest buckets (a hash of
			// their ids, so a random few), in id order.
			bkt := func(id string) int32 {
				if h := c.rec(id); h != nil {
					return h.bucket
				}
				return math.MaxInt32 // named but not admitted: it cannot load anything yet
			}
			slices.SortStableFunc(list, func(a, b string) int { return cmp.Compare(bkt(a), bkt(b)) })
			list = slices.Sorted(slices.Values(list[:s.Wave]))
			set = make(map[string]bool, len(list))
			for _, id := range list {
				set[id] = true
			}
		}
		n.lists[i], n.sets[i] = list, set
	}
	c.named[r.Channel] = n
	return n
}

// StageOverflow returns, per stage of the channel's rollout, how many hosts
// its tags matched beyond MaxStageHosts (left out).
func (c *Controller) StageOverflow(channel uint32) []int {
	r, ok := c.rollouts[channel]
	if !ok {
		return nil
	}
	return slices.Clone(c.namedOf(r).over)
}

// membershipChanged re-resolves named stages and re-signs the plans of
// active rollouts whose stages name tags.
func (c *Controller) membershipChanged() {
	clear(c.named)
	for ch, r := range c.rollouts {
		if !r.Active() || r.State == StateHalted {
			continue
		}
		for _, s := range r.Stages {
			if len(s.Tags) > 0 {
				c.changedPlans[ch] = true
				break
			}
		}
	}
}

// Admission is what an operator (or an enrolment token) decided about a
// host joining the fleet.
type Admission struct {
	Fleet string
	Tags  []string
	// By names who admitted it: an operator, or "token:<id>".
	By string
}

// CheckTags refuses tags beyond the bounds.
func CheckTags(tags []string) error {
	if len(tags) > MaxHostTags {
		return fmt.Errorf("controller: %d tags; a host has at most %d", len(tags), MaxHostTags)
	}
	for _, t := range tags {
		if t == "" || len(t) > wire.MaxTagLen {
			return fmt.Errorf("controller: tag %.70q: tags are 1 to %d bytes", t, wire.MaxTagLen)
		}
	}
	return nil
}

// Admit puts a host in the fleet. Admitting a host already in it changes
// nothing and says so.
func (c *Controller) Admit(id string, a Admission, now time.Time) (*Host, error) {
	if h := c.rec(id); h != nil {
		return h.host(), fmt.Errorf("%w: %s is already in the fleet (admitted %s by %s)", ErrState, id, h.admitted.Format(time.RFC3339), h.prof.Value().by)
	}
	if err := CheckTags(a.Tags); err != nil {
		return nil, err
	}
	if id == "" || len(id) > wire.MaxIDLen {
		return nil, errors.New("controller: a host id is 1 to 64 bytes")
	}
	h := hostRec{id: id, prof: profileOf(a.Fleet, a.By, a.Tags), sensor: sensorOf("", ""), bucket: int32(rollout.Bucket(id)), admitted: now}
	if _, ok := c.beforeHosts[id]; !ok {
		c.beforeHosts[id] = hostBefore{existed: false}
	}
	c.dirtyHosts[id] = true
	c.add(h)
	if len(a.Tags) > 0 {
		c.membershipChanged()
	}
	return h.host(), nil
}

// SetTags replaces a host's tags (the server's record).
func (c *Controller) SetTags(id string, tags []string) error {
	h := c.rec(id)
	if h == nil {
		return fmt.Errorf("%w: %s", ErrNotAdmitted, id)
	}
	if err := CheckTags(tags); err != nil {
		return err
	}
	c.touchHost(h)
	p := h.prof.Value()
	h.prof = profileOf(p.fleet, p.by, tags)
	c.membershipChanged()
	return nil
}

// Remove takes a host out of the fleet (decommissioned). Failures it
// already caused stay counted in the rollouts they happened in.
func (c *Controller) Remove(id string) error {
	h := c.rec(id)
	if h == nil {
		return fmt.Errorf("%w: %s", ErrNotAdmitted, id)
	}
	c.touchHost(h)
	c.drop(id)
	c.membershipChanged()
	return nil
}

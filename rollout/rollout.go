// Package rollout is the rollout plan that the rollout role signs as target
// rollout/<channel>.json, and the one rule that hosts and the rollout server
// share: which stage, and so which content version, a host belongs to.
//
// A plan names versions, never bytes (the content role signs the bytes).
// Its stages are nested rings in order: the canary group (host ids and
// tags), then percentages of buckets. A host's bucket is a stable hash of
// its id, 0..9999, so raising a percentage never drops a host that already
// has the version, and a host takes the version of the first stage it is in.
package rollout

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/ringfence/ringfence/compat"
)

// Format is the "format" member of a plan.
const Format = "ringfence-rollout/v1"

// MaxSize bounds a plan.
const MaxSize = 1 << 20

// Buckets is the number of buckets hosts hash into: 0.01% each.
const Buckets = 10_000

// Plan is a rollout plan: which content version hosts of each ring install.
type Plan struct {
	Format  string `json:"format"`
	Channel uint32 `json:"channel"`
	// Stages are nested rings, in order; a host is in a stage when its
	// bucket is below Percent*100, or its id or one of its tags is listed.
	// A plan with no stages gives no host any version: the channel's hosts
	// run no content (a first rollout, rolled back).
	Stages []Stage `json:"stages"`
	// Deny lists versions hosts must never install (rolled back).
	Deny []uint32 `json:"deny,omitempty"`
}

// Stage is one ring of a plan.
type Stage struct {
	Name    string   `json:"name"`
	Percent float64  `json:"percent"`
	Hosts   []string `json:"hosts,omitempty"`
	Tags    []string `json:"tags,omitempty"`
	Version uint32   `json:"version"`
	// Sensors, when set, are the sensor versions the stage's version may
	// run on (its content's compatibility constraint, package compat): a
	// host whose sensor is not listed is in no such stage, and falls
	// through to a later one (the version the fleet ran before).
	Sensors []string `json:"sensors,omitempty"`
}

// Constraint is the stage's compatibility constraint.
func (s Stage) Constraint() compat.Constraint { return compat.Constraint{Sensors: s.Sensors} }

// Parse decodes and checks a plan: strict JSON, bounded, the format known,
// a list of stages (empty: no content for anyone), every stage with a
// version and a percentage in 0..100.
func Parse(data []byte) (*Plan, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("rollout: plan is %d bytes; the limit is %d", len(data), MaxSize)
	}
	var p Plan
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("rollout: plan: %w", err)
	}
	if p.Format != Format {
		return nil, fmt.Errorf("rollout: plan format %q; want %q", p.Format, Format)
	}
	if p.Stages == nil {
		return nil, errors.New("rollout: plan has no list of stages (an empty list means no content)")
	}
	for i, s := range p.Stages {
		if !(s.Percent >= 0 && s.Percent <= 100) || s.Version == 0 {
			return nil, fmt.Errorf("rollout: plan stage %d (%s): percent must be 0..100 and version set", i+1, s.Name)
		}
		if err := s.Constraint().Check(); err != nil {
			return nil, fmt.Errorf("rollout: plan stage %d (%s): %w", i+1, s.Name, err)
		}
	}
	return &p, nil
}

// Bucket is the host's bucket, 0..Buckets-1: the first 8 bytes of the
// SHA-256 of its id, modulo Buckets. It never changes for a host id.
func Bucket(hostID string) int {
	sum := sha256.Sum256([]byte(hostID))
	return int(binary.BigEndian.Uint64(sum[:8]) % Buckets)
}

// Host is what a plan is matched against.
type Host struct {
	ID   string
	Tags []string
	// Sensor is the host's installed sensor version ("": unknown, in no
	// stage that names sensors).
	Sensor string
}

// Contains reports whether the host is in the stage.
func (s Stage) Contains(h Host) bool { return s.ContainsBucket(h, Bucket(h.ID)) }

// ContainsBucket is Contains for a host whose bucket is known (the server
// computes each host's bucket once, not at every evaluation).
func (s Stage) ContainsBucket(h Host, bucket int) bool {
	if !s.Constraint().Allows(h.Sensor) {
		return false
	}
	if slices.Contains(s.Hosts, h.ID) {
		return true
	}
	for _, t := range h.Tags {
		if slices.Contains(s.Tags, t) {
			return true
		}
	}
	return bucket < s.BucketLimit()
}

// BucketLimit is the number of buckets the stage's percentage covers: a
// host whose bucket is below it is in the stage.
func (s Stage) BucketLimit() int { return int(math.Round(s.Percent * Buckets / 100)) }

// StageFor returns the index of the first stage the host is in, or -1.
func (p *Plan) StageFor(h Host) int {
	for i, s := range p.Stages {
		if s.Contains(h) {
			return i
		}
	}
	return -1
}

// NoContent reports whether the plan gives no host any version.
func (p *Plan) NoContent() bool { return len(p.Stages) == 0 }

// Denied reports whether the plan forbids version v.
func (p *Plan) Denied(v uint32) bool { return slices.Contains(p.Deny, v) }

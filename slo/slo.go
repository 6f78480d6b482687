// Package slo is the rollout's external health checks: PromQL queries
// with a threshold, evaluated against a Prometheus server at each gate
// evaluation, the way Flagger and Argo Rollouts analyse a canary. A breach
// halts the rollout; a query that has returned no data for longer than its
// grace is a breach too (no data is never good). docs/slo.md is the
// operator's account.
//
// The package has three parts: Check and Validate (what a rollout spec
// may carry), Client (instant queries against Prometheus's HTTP API) and
// Evaluator (the checks of every watched rollout at one time, and the
// memory of when each last had data). It does no logging and holds no
// rollout state beyond that memory: the server decides what a breach does.
package slo

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Check is one query and its bound, as a rollout spec carries it.
type Check struct {
	// Name names the check in decisions and on the dashboard.
	Name string `json:"name"`
	// Query is a PromQL instant query that returns one number (a scalar
	// or a vector with one sample).
	Query string `json:"query"`
	// Max and Min bound the value; the check is breached when it is above
	// Max or below Min. At least one is set.
	Max *float64 `json:"max,omitempty"`
	Min *float64 `json:"min,omitempty"`
	// Grace is how long the query may return no data, from the rollout's
	// start or from its last value, before that is a breach.
	Grace time.Duration `json:"grace,omitempty"`
}

// Bounds of a spec's checks. A check's name is shown in decisions, logs
// and the status table; its query travels in the start request (64 KiB in
// all) and is sent to Prometheus at every evaluation.
const (
	MaxChecks   = 16
	MaxNameLen  = 64
	MaxQueryLen = 4096
)

// Validate reports what is wrong with c, or nil. The bounds must be
// finite (a NaN bound would never be crossed, so the check could never
// fire).
func (c Check) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: check %.64q: %s", ErrInvalid, c.Name, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Name == "" || len(c.Name) > MaxNameLen:
		return fmt.Errorf("%w: a check's name is 1 to %d bytes (got %d)", ErrInvalid, MaxNameLen, len(c.Name))
	case !printable(c.Name):
		return bad("the name must be printable UTF-8 (it is shown in decisions and logs)")
	case c.Query == "" || len(c.Query) > MaxQueryLen:
		return bad("the query is 1 to %d bytes (got %d); give a PromQL query that returns one number", MaxQueryLen, len(c.Query))
	case !utf8.ValidString(c.Query):
		return bad("the query is not UTF-8")
	case c.Max == nil && c.Min == nil:
		return bad("give max, min or both: a check without a bound can never be breached")
	case c.Max != nil && !finite(*c.Max), c.Min != nil && !finite(*c.Min):
		return bad("the bounds must be finite numbers")
	case c.Max != nil && c.Min != nil && *c.Min > *c.Max:
		return bad("min %g is above max %g: every value would breach it", *c.Min, *c.Max)
	case c.Grace < 0:
		return bad("grace %v is negative", c.Grace)
	}
	return nil
}

// The placeholders a query may carry: Expand replaces each with the
// rollout's own value, so that one checks file serves every rollout.
const (
	VersionPlaceholder = "{{version}}" // the version the rollout sends out
	ChannelPlaceholder = "{{channel}}" // the rollout's channel
)

// Expand returns c with its query's placeholders replaced by the rollout's
// channel and new version, as decimal numbers. Any "{{" left after that is
// an unknown placeholder (PromQL has no use for it): an error that names
// the known ones, rather than a query that would never match.
func (c Check) Expand(channel, version uint32) (Check, error) {
	r := strings.NewReplacer(VersionPlaceholder, strconv.FormatUint(uint64(version), 10),
		ChannelPlaceholder, strconv.FormatUint(uint64(channel), 10))
	c.Query = r.Replace(c.Query)
	if i := strings.Index(c.Query, "{{"); i >= 0 {
		return c, fmt.Errorf("%w: check %.64q: unknown placeholder at %.24q; a query may use %s and %s", ErrInvalid, c.Name, c.Query[i:], VersionPlaceholder, ChannelPlaceholder)
	}
	return c, nil
}

// Validate checks a spec's checks: each one, at most MaxChecks, and no
// name twice (a decision names the check that halted the rollout).
func Validate(cs []Check) error {
	if len(cs) > MaxChecks {
		return fmt.Errorf("%w: %d checks; the limit is %d a rollout", ErrInvalid, len(cs), MaxChecks)
	}
	seen := map[string]bool{}
	for _, c := range cs {
		if err := c.Validate(); err != nil {
			return err
		}
		if seen[c.Name] {
			return fmt.Errorf("%w: check %q is named twice; give each check its own name", ErrInvalid, c.Name)
		}
		seen[c.Name] = true
	}
	return nil
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

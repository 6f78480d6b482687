// Package slo is the rollout's external health checks: PromQL queries
// with a threshold, evaluated against a Prometheus server at each gate
// evaluation, the way Flagger and Argo Rollouts analyse a canary. A breach
// halts the rollout; a query that has returned no data for longer than its
// grace is a breach too (no data is never good). docs/gate.md is the
// operator's account.
package slo

import "time"

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

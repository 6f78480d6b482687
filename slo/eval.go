package slo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/ringfence/ringfence/internal/clock"
)

// Querier runs an instant query: the value at time at, or an error
// (ErrNoData when the query answered without a number). Client is one;
// tests use a fake.
type Querier interface {
	Query(ctx context.Context, query string, at time.Time) (float64, error)
}

// Rollout is a rollout the evaluator watches: who it is, and its checks.
type Rollout struct {
	Channel, To uint32
	Started     time.Time
	Checks      []Check
}

// Status is what the last evaluation of a check found.
type Status struct {
	// Value is the last value the query returned, at LastData, from this
	// evaluation or an earlier one (nil: none yet). An infinite value is
	// shown as the largest float64 of its sign: JSON has no infinity.
	Value    *float64  `json:"value,omitempty"`
	LastData time.Time `json:"last_data,omitzero"`
	// At is the time of the last evaluation. NoData: it had no value
	// (no data, or a query that failed: Error says why).
	At     time.Time `json:"at"`
	NoData bool      `json:"no_data,omitempty"`
	Error  string    `json:"error,omitempty"`
	// Breach is the breach the last evaluation found, if it found one.
	Breach string `json:"breach,omitempty"`
}

// Breach is a check breached: a value beyond a bound, or no data for
// longer than the check's grace.
type Breach struct {
	Check string
	// Value is beyond Bound: above it when Above, else below it.
	Value, Bound float64
	Above        bool
	// Missing: no data for NoData, longer than Grace; Err is the last
	// failed query's error, if the query failed rather than answered
	// with no data.
	Missing       bool
	NoData, Grace time.Duration
	Err           string
}

// String is the breach as a halt decision records it.
func (b Breach) String() string {
	if b.Missing {
		s := fmt.Sprintf("SLO check %s breached: no data for %v, longer than its grace of %v (no data is never good)", b.Check, longer(b.NoData, b.Grace), b.Grace)
		if b.Err != "" {
			s += "; the last query failed: " + b.Err
		}
		return s
	}
	v, bound := apart(b.Value, b.Bound)
	if b.Above {
		return fmt.Sprintf("SLO check %s breached: value %s is above its max %s", b.Check, v, bound)
	}
	return fmt.Sprintf("SLO check %s breached: value %s is below its min %s", b.Check, v, bound)
}

// longer rounds d, which is longer than grace, to whole seconds, or as
// finely as it takes to read longer (2.1s, not 2s, past a grace of 2s).
func longer(d, grace time.Duration) time.Duration {
	for _, unit := range []time.Duration{time.Second, 100 * time.Millisecond, time.Millisecond} {
		if r := d.Round(unit); r > grace {
			return r
		}
	}
	return d
}

// apart formats a value and the bound it crossed with 4 significant
// digits, or as many more as it takes for them to read differently
// (0.0200001 above 0.02, never 0.02 above 0.02).
func apart(v, bound float64) (string, string) {
	b := strconv.FormatFloat(bound, 'g', -1, 64)
	for p := 4; p < 17; p++ {
		if s := strconv.FormatFloat(v, 'g', p, 64); s != b {
			return s, b
		}
	}
	return strconv.FormatFloat(v, 'g', -1, 64), b
}

// Failure is a check whose query failed (not one that answered with no
// data): it counts as no data, so the grace applies. New: its error
// differs from the one the check's previous evaluation had (to log once).
type Failure struct {
	Check string
	Err   error
	New   bool
}

// Result is one rollout's evaluation.
type Result struct {
	Channel, To uint32
	Started     time.Time
	// Checks are the checks' statuses, in the spec's order.
	Checks []Status
	// Breach is the first check breached, in the spec's order (nil: none).
	Breach *Breach
	// Failed are the checks whose query failed.
	Failed []Failure
}

// MaxParallel bounds the queries an evaluation has in flight at once.
const MaxParallel = 4

// Evaluator runs the checks of the rollouts it is given, and remembers
// for each check when it last had data: a check with no data is breached
// once that is longer ago than its grace. The grace of a check that never
// had data counts from when watching began: the rollout's start, or, for
// a rollout that started before the evaluator was made or Reset (a
// server's restart, a new leader), that moment; and for a rollout watched
// again after a gap (halted, then resumed), the moment it was resumed.
// It is safe for concurrent use; Evaluate calls run one at a time.
type Evaluator struct {
	q     Querier
	clock clock.Clock

	run sync.Mutex // one Evaluate at a time

	mu      sync.Mutex // guards what follows
	born    time.Time
	gen     uint64
	watched map[uint32]*watch // by channel: the latest rollout watched there
}

type watch struct {
	to      uint32
	started time.Time
	from    time.Time // when watching began (see Evaluator)
	gen     uint64    // the evaluation that included it last
	checks  []checkState
}

type checkState struct {
	lastData time.Time
	value    float64
	has      bool
	status   Status
}

// NewEvaluator returns an evaluator that queries q at clk's times.
func NewEvaluator(q Querier, clk clock.Clock) *Evaluator {
	return &Evaluator{q: q, clock: clk, born: clk.Now(), watched: map[uint32]*watch{}}
}

// Reset forgets every check's history, as if the evaluator were new: a
// server does it when it comes to lead, since it did not watch meanwhile.
func (e *Evaluator) Reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.born = e.clock.Now()
	clear(e.watched)
}

// Evaluate runs every check of rs once, at the clock's time, with at most
// MaxParallel queries in flight; ctx bounds them all (a query cut off
// counts as failed). A rollout missing from rs is no longer watched: its
// last statuses stay for Status until another rollout on its channel is
// watched, and if it is given again later its graces start again.
func (e *Evaluator) Evaluate(ctx context.Context, rs []Rollout) []Result {
	e.run.Lock()
	defer e.run.Unlock()
	now := e.clock.Now()

	e.mu.Lock()
	e.gen++
	ws := make([]*watch, len(rs))
	for i, r := range rs {
		w := e.watched[r.Channel]
		switch {
		case w == nil || w.to != r.To || !w.started.Equal(r.Started) || len(w.checks) != len(r.Checks):
			w = &watch{to: r.To, started: r.Started, from: r.Started, checks: make([]checkState, len(r.Checks))}
			if w.from.Before(e.born) {
				w.from = e.born
			}
			e.watched[r.Channel] = w
		case w.gen != e.gen-1:
			w.from = now // watched again after a gap: it was not watched meanwhile
		}
		w.gen = e.gen
		ws[i] = w
	}
	e.mu.Unlock()

	type answer struct {
		v   float64
		err error
	}
	answers := make([][]answer, len(rs))
	sem := make(chan struct{}, MaxParallel)
	var wg sync.WaitGroup
	for i, r := range rs {
		answers[i] = make([]answer, len(r.Checks))
		for j, c := range r.Checks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				v, err := e.q.Query(ctx, c.Query, now)
				answers[i][j] = answer{v, err}
			}()
		}
	}
	wg.Wait()

	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Result, len(rs))
	for i, r := range rs {
		w := ws[i]
		res := Result{Channel: r.Channel, To: r.To, Started: r.Started, Checks: make([]Status, len(r.Checks))}
		for j, c := range r.Checks {
			cs := &w.checks[j]
			v, err := answers[i][j].v, answers[i][j].err
			st := Status{At: now}
			var b *Breach
			if err == nil {
				cs.lastData, cs.value, cs.has = now, v, true
				switch {
				case c.Max != nil && v > *c.Max:
					b = &Breach{Check: c.Name, Value: v, Bound: *c.Max, Above: true}
				case c.Min != nil && v < *c.Min:
					b = &Breach{Check: c.Name, Value: v, Bound: *c.Min}
				}
			} else {
				st.NoData = true
				if !errors.Is(err, ErrNoData) {
					st.Error = err.Error()
					res.Failed = append(res.Failed, Failure{Check: c.Name, Err: err, New: st.Error != cs.status.Error})
				}
				since := w.from
				if cs.lastData.After(since) {
					since = cs.lastData
				}
				if gap := now.Sub(since); gap > c.Grace {
					b = &Breach{Check: c.Name, Missing: true, NoData: gap, Grace: c.Grace, Err: st.Error}
				}
			}
			st.LastData = cs.lastData
			if cs.has {
				x := shown(cs.value)
				st.Value = &x
			}
			if b != nil {
				st.Breach = b.String()
				if res.Breach == nil {
					res.Breach = b
				}
			}
			cs.status = st
			res.Checks[j] = st
		}
		out[i] = res
	}
	return out
}

// Status returns the statuses of the checks of the rollout of version to
// on channel started at started, as its last evaluation found them; nil
// when the evaluator has not evaluated it.
func (e *Evaluator) Status(channel, to uint32, started time.Time) []Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	w := e.watched[channel]
	if w == nil || w.to != to || !w.started.Equal(started) || w.gen == 0 {
		return nil
	}
	out := make([]Status, len(w.checks))
	for i, cs := range w.checks {
		out[i] = cs.status
		if v := cs.status.Value; v != nil {
			x := *v
			out[i].Value = &x
		}
	}
	return out
}

// Probe runs each check's query once at time at, and returns the first
// error that says the check cannot work as written or cannot run at all:
// a query Prometheus refuses, one that returns more or other than one
// number, a Prometheus that cannot be reached. No data is no error (the
// new version's series may not exist yet), nor is any value.
func Probe(ctx context.Context, q Querier, checks []Check, at time.Time) error {
	for _, c := range checks {
		if _, err := q.Query(ctx, c.Query, at); err != nil && !errors.Is(err, ErrNoData) {
			return fmt.Errorf("SLO check %q: %w", c.Name, err)
		}
	}
	return nil
}

// shown keeps a value encodable in JSON (which has no infinities).
func shown(x float64) float64 {
	switch {
	case math.IsInf(x, 1):
		return math.MaxFloat64
	case math.IsInf(x, -1):
		return -math.MaxFloat64
	}
	return x
}

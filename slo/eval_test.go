package slo_test

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/slo"
)

// fakeProm answers each query with what the test set for it (no data
// until set).
type fakeProm struct {
	mu      sync.Mutex
	answers map[string]answer
	asked   map[string]time.Time
}

type answer struct {
	v   float64
	err error
}

func newFakeProm() *fakeProm {
	return &fakeProm{answers: map[string]answer{}, asked: map[string]time.Time{}}
}

func (p *fakeProm) set(q string, v float64)    { p.put(q, answer{v: v}) }
func (p *fakeProm) fail(q string, err error)   { p.put(q, answer{err: err}) }
func (p *fakeProm) put(q string, a answer)     { p.mu.Lock(); p.answers[q] = a; p.mu.Unlock() }
func (p *fakeProm) askedAt(q string) time.Time { p.mu.Lock(); defer p.mu.Unlock(); return p.asked[q] }

func (p *fakeProm) Query(_ context.Context, q string, at time.Time) (float64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked[q] = at
	a, ok := p.answers[q]
	if !ok {
		return 0, slo.ErrNoData
	}
	return a.v, a.err
}

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// TestEvaluateBounds: a value within the bounds is no breach, one above
// max or below min is, on the boundary is not; every check is queried at
// the clock's time and reported, the first breached in the spec's order
// is the result's breach.
func TestEvaluateBounds(t *testing.T) {
	clk := clock.NewFake(t0)
	p := newFakeProm()
	e := slo.NewEvaluator(p, clk)
	r := slo.Rollout{Channel: 291, To: 1002, Started: t0, Checks: []slo.Check{
		{Name: "errors", Query: "e", Max: f(0.05)},
		{Name: "success", Query: "s", Min: f(0.99), Max: f(1)},
	}}
	for _, tc := range []struct {
		name   string
		e, s   float64
		breach string
	}{
		{"within", 0.01, 0.995, ""},
		{"on the bounds", 0.05, 0.99, ""},
		{"above max", 0.0501, 0.995, "SLO check errors breached: value 0.0501 is above its max 0.05"},
		{"below min", 0.01, 0.98, "SLO check success breached: value 0.98 is below its min 0.99"},
		{"both: the first in the spec", 0.5, 0.5, "SLO check errors breached: value 0.5 is above its max 0.05"},
		{"infinite", math.Inf(1), 1, "SLO check errors breached: value +Inf is above its max 0.05"},
		{"a long value, 4 digits", 0.07127742870006068, 1, "SLO check errors breached: value 0.07128 is above its max 0.05"},
		{"just above: as many digits as it takes", 0.0500000001, 1, "SLO check errors breached: value 0.0500000001 is above its max 0.05"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk.Advance(time.Second)
			p.set("e", tc.e)
			p.set("s", tc.s)
			res := e.Evaluate(context.Background(), []slo.Rollout{r})
			require.Len(t, res, 1)
			require.Equal(t, uint32(291), res[0].Channel)
			require.Equal(t, clk.Now(), p.askedAt("e"))
			require.Len(t, res[0].Checks, 2)
			if tc.breach == "" {
				require.Nil(t, res[0].Breach)
			} else {
				require.NotNil(t, res[0].Breach)
				require.Equal(t, tc.breach, res[0].Breach.String())
			}
			st := res[0].Checks[0]
			require.Equal(t, clk.Now(), st.At)
			require.Equal(t, clk.Now(), st.LastData)
			require.False(t, st.NoData)
			require.NotNil(t, st.Value)
			require.False(t, math.IsInf(*st.Value, 0), "JSON can carry it")
			require.Equal(t, res[0].Checks, e.Status(291, 1002, t0))
		})
	}
}

// TestEvaluateGrace: no data is no breach for the check's grace, counted
// from the rollout's start, then from its last value; after that it is a
// breach, which says for how long and why. A query that fails counts as
// no data, and its error is reported once until it changes.
func TestEvaluateGrace(t *testing.T) {
	clk := clock.NewFake(t0.Add(-time.Hour))
	p := newFakeProm()
	e := slo.NewEvaluator(p, clk)
	clk.Set(t0.Add(30 * time.Second)) // the first evaluation, 30 s after the start
	r := slo.Rollout{Channel: 291, To: 1002, Started: t0, Checks: []slo.Check{{Name: "latency", Query: "l", Max: f(0.3), Grace: 2 * time.Minute}}}
	eval := func() slo.Result {
		t.Helper()
		res := e.Evaluate(context.Background(), []slo.Rollout{r})
		require.Len(t, res, 1)
		return res[0]
	}

	res := eval()
	require.Nil(t, res.Breach, "30 s without data, within the grace")
	require.True(t, res.Checks[0].NoData)
	require.Nil(t, res.Checks[0].Value)
	require.Empty(t, res.Failed, "no data is not a failure")

	clk.Set(t0.Add(2 * time.Minute))
	require.Nil(t, eval().Breach, "exactly the grace: not longer")

	clk.Set(t0.Add(2*time.Minute + time.Second))
	res = eval()
	require.NotNil(t, res.Breach, "longer than the grace since the rollout's start")
	require.Equal(t, "SLO check latency breached: no data for 2m1s, longer than its grace of 2m0s (no data is never good)", res.Breach.String())
	require.Equal(t, res.Breach.String(), res.Checks[0].Breach)

	// A value, then no data again: the grace counts from the value.
	clk.Advance(time.Second)
	p.set("l", 0.1)
	res = eval()
	require.Nil(t, res.Breach)
	had := clk.Now()
	p.put("l", answer{err: slo.ErrNoData})
	clk.Advance(2 * time.Minute)
	res = eval()
	require.Nil(t, res.Breach, "2m since the last value")
	require.Equal(t, had, res.Checks[0].LastData)
	require.Equal(t, 0.1, *res.Checks[0].Value, "the last value stays shown")

	// A failing query counts as no data; its error is new once.
	down := errors.New("slo: query Prometheus at http://prom:9090: connection refused")
	p.fail("l", down)
	clk.Advance(time.Second)
	res = eval()
	require.Equal(t, []slo.Failure{{Check: "latency", Err: down, New: true}}, res.Failed)
	require.Equal(t, down.Error(), res.Checks[0].Error)
	require.NotNil(t, res.Breach)
	require.Contains(t, res.Breach.String(), "no data for 2m1s, longer than its grace of 2m0s (no data is never good); the last query failed: slo: query Prometheus at http://prom:9090: connection refused")
	res = eval()
	require.False(t, res.Failed[0].New, "the same error again")
}

// TestEvaluateGraceNoGrace: with no grace, the first evaluation without
// data after any time has passed is a breach.
func TestEvaluateNoGrace(t *testing.T) {
	clk := clock.NewFake(t0)
	e := slo.NewEvaluator(newFakeProm(), clk)
	r := slo.Rollout{Channel: 1, To: 2, Started: t0, Checks: []slo.Check{{Name: "x", Query: "x", Min: f(1)}}}
	require.Nil(t, e.Evaluate(context.Background(), []slo.Rollout{r})[0].Breach, "no time has passed")
	clk.Advance(time.Millisecond)
	require.NotNil(t, e.Evaluate(context.Background(), []slo.Rollout{r})[0].Breach)
}

// TestEvaluateWatching: the grace of a rollout that started before the
// evaluator (a restart, a new leader: Reset) counts from then, not from
// its start; a rollout watched again after a gap (halted and resumed) has
// its grace again; a new rollout on the channel starts afresh.
func TestEvaluateWatching(t *testing.T) {
	clk := clock.NewFake(t0.Add(time.Hour)) // the server starts an hour into the rollout
	p := newFakeProm()
	e := slo.NewEvaluator(p, clk)
	r := slo.Rollout{Channel: 291, To: 1002, Started: t0, Checks: []slo.Check{{Name: "x", Query: "x", Max: f(1), Grace: time.Minute}}}
	other := slo.Rollout{Channel: 292, To: 2001, Started: t0, Checks: []slo.Check{{Name: "y", Query: "y", Max: f(1), Grace: time.Hour}}}
	eval := func(rs ...slo.Rollout) *slo.Breach {
		t.Helper()
		res := e.Evaluate(context.Background(), rs)
		return res[0].Breach
	}
	clk.Advance(5 * time.Second)
	require.Nil(t, eval(r, other), "not an hour without data: 5 s since the server began to watch")
	clk.Advance(time.Minute)
	require.NotNil(t, eval(r, other))

	// Reset (a new leader): the grace again, from the reset.
	e.Reset()
	require.Nil(t, e.Status(291, 1002, t0), "forgotten")
	clk.Advance(30 * time.Second)
	require.Nil(t, eval(r, other))

	// Not watched for a while (the rollout halted), then again: its grace
	// starts again from then; the other channel, watched all along, not.
	clk.Advance(10 * time.Minute)
	require.Nil(t, eval(other))
	require.NotNil(t, e.Status(291, 1002, t0), "a rollout not watched keeps its last statuses for the view")
	require.Nil(t, eval(r), "resumed: its grace starts again")
	clk.Advance(time.Minute + time.Second)
	require.NotNil(t, eval(r))

	// A new rollout on the channel: afresh, from its start.
	next := r
	next.To, next.Started = 1003, clk.Now()
	clk.Advance(30 * time.Second)
	require.Nil(t, eval(next))
	require.Nil(t, e.Status(291, 1002, t0), "the old rollout's statuses went with it")
	require.NotNil(t, e.Status(291, 1003, next.Started))
}

// blocking is a Querier whose queries wait until released or cut off.
type blocking struct {
	inFlight, most atomic.Int32
	started        chan struct{}
	release        chan struct{}
}

func (b *blocking) Query(ctx context.Context, q string, at time.Time) (float64, error) {
	n := b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	for {
		m := b.most.Load()
		if n <= m || b.most.CompareAndSwap(m, n) {
			break
		}
	}
	b.started <- struct{}{}
	select {
	case <-b.release:
		return 1, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// TestEvaluateParallelAndBounded: at most MaxParallel queries are in
// flight at once; the context bounds them all, and a query it cuts off
// counts as failed (so as no data: the grace applies).
func TestEvaluateParallelAndBounded(t *testing.T) {
	b := &blocking{started: make(chan struct{}, 64), release: make(chan struct{})}
	clk := clock.NewFake(t0)
	e := slo.NewEvaluator(b, clk)
	var checks []slo.Check
	for i := range slo.MaxChecks {
		checks = append(checks, slo.Check{Name: string(rune('a' + i)), Query: "q", Max: f(2), Grace: time.Minute})
	}
	rs := []slo.Rollout{{Channel: 1, To: 2, Started: t0, Checks: checks}}
	done := make(chan []slo.Result)
	go func() { done <- e.Evaluate(context.Background(), rs) }()
	for range slo.MaxChecks {
		<-b.started
		b.release <- struct{}{}
	}
	res := <-done
	require.Nil(t, res[0].Breach)
	require.LessOrEqual(t, b.most.Load(), int32(slo.MaxParallel))
	require.Positive(t, b.most.Load())

	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- e.Evaluate(ctx, rs) }()
	<-b.started
	cancel()
	res = <-done
	require.Len(t, res[0].Failed, slo.MaxChecks, "every query cut off")
	require.ErrorIs(t, res[0].Failed[0].Err, context.Canceled)
	require.Nil(t, res[0].Breach, "within the grace since the last value")
}

// TestProbe: a check that cannot work is refused at the start; no data or
// any value is fine.
func TestProbe(t *testing.T) {
	p := newFakeProm()
	p.set("ok", 7)
	p.fail("bad", &slo.APIError{HTTPStatus: 400, Type: "bad_data", Message: "parse error"})
	cs := []slo.Check{{Name: "a", Query: "ok"}, {Name: "b", Query: "nothing yet"}}
	require.NoError(t, slo.Probe(context.Background(), p, cs, t0))
	err := slo.Probe(context.Background(), p, append(cs, slo.Check{Name: "c", Query: "bad"}), t0)
	require.ErrorContains(t, err, `SLO check "c": slo: Prometheus refused the query (HTTP 400, bad_data): parse error`)
}

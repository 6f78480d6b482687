package sensor

import (
	"errors"
	"time"
)

// LatencyBounds are the upper bounds, in microseconds, of the buckets of a
// Meter's latency histogram (1-2-5 steps from 1 µs to 10 s); one more
// bucket takes everything above the last. They are fixed, so that two
// readings of a meter can be subtracted bucket by bucket, and they are part
// of the agent's health line (docs/ringfenced.md): an agent that reports
// its own counts uses these bounds.
var LatencyBounds = [...]float64{
	1, 2, 5, 10, 20, 50, 100, 200, 500,
	1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5,
	1e6, 2e6, 5e6, 1e7,
}

// LatencyBuckets is the number of buckets of a Meter's histogram: one per
// bound and the overflow bucket.
const LatencyBuckets = len(LatencyBounds) + 1

// Meter counts the events a sensor processed and how long each took, since
// it started: cumulative counters, which only grow, so that what happened
// between two readings is their difference (Sub). The zero Meter has
// counted nothing. It is a value: copying it takes a reading.
type Meter struct {
	Events  uint64
	Busy    time.Duration          // the time all of them took together
	Latency [LatencyBuckets]uint64 // events per bucket of LatencyBounds
}

// Observe counts one event that took d.
func (m *Meter) Observe(d time.Duration) {
	m.Events++
	m.Busy += max(d, 0)
	us := float64(d) / float64(time.Microsecond)
	for i, b := range LatencyBounds {
		if us <= b {
			m.Latency[i]++
			return
		}
	}
	m.Latency[len(LatencyBounds)]++
}

// ErrMeterWentBack is returned by Sub when a counter of the later reading
// is below the earlier one's: they are not readings of one meter (the
// sensor started over).
var ErrMeterWentBack = errors.New("sensor: the meter went back: the readings are not of one run")

// Sub returns what m counted since the earlier reading old.
func (m Meter) Sub(old Meter) (Meter, error) {
	if m.Events < old.Events || m.Busy < old.Busy {
		return Meter{}, ErrMeterWentBack
	}
	d := Meter{Events: m.Events - old.Events, Busy: m.Busy - old.Busy}
	for i := range m.Latency {
		if m.Latency[i] < old.Latency[i] {
			return Meter{}, ErrMeterWentBack
		}
		d.Latency[i] = m.Latency[i] - old.Latency[i]
	}
	return d, nil
}

// Quantile returns the latency below which a fraction q (0..1) of the
// counted events fell, in microseconds, 0 with none: the bucket that holds
// that rank, interpolated linearly within it (as Prometheus's
// histogram_quantile does). A rank in the overflow bucket is reported as
// the last bound, 10 s: at least that.
func (m Meter) Quantile(q float64) float64 {
	var total uint64
	for _, n := range m.Latency {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var below uint64
	lower := 0.0
	for i, b := range LatencyBounds {
		n := m.Latency[i]
		if n > 0 && float64(below+n) >= rank {
			return lower + (b-lower)*max(rank-float64(below), 0)/float64(n)
		}
		below += n
		lower = b
	}
	return LatencyBounds[len(LatencyBounds)-1]
}

package sensor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMeterQuantile(t *testing.T) {
	for _, tc := range []struct {
		name string
		obs  map[time.Duration]int // latency -> events
		q    float64
		want float64 // microseconds
	}{
		{"nothing", nil, 0.99, 0},
		{"all in one bucket", map[time.Duration]int{3 * time.Microsecond: 100}, 0.99, 2 + 3*0.99},
		{"the slow tail decides the 99th", map[time.Duration]int{time.Microsecond / 2: 98, 300 * time.Microsecond: 2}, 0.99, 200 + 300*0.5},
		{"one slow in a hundred is not the 99th", map[time.Duration]int{time.Microsecond / 2: 99, 300 * time.Microsecond: 1}, 0.99, 1},
		{"the median", map[time.Duration]int{15 * time.Microsecond: 50, 40 * time.Microsecond: 50}, 0.5, 20},
		{"above the last bound", map[time.Duration]int{time.Minute: 10}, 0.99, 1e7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m Meter
			n := 0
			for d, k := range tc.obs {
				for range k {
					m.Observe(d)
				}
				n += k
			}
			require.Equal(t, uint64(n), m.Events)
			require.InDelta(t, tc.want, m.Quantile(tc.q), 1e-9)
		})
	}
}

// TestMeterBounds: each observation lands in the bucket whose bound is the
// first at or above it.
func TestMeterBounds(t *testing.T) {
	var m Meter
	m.Observe(0)
	m.Observe(time.Microsecond)
	m.Observe(time.Microsecond + 1)
	m.Observe(10 * time.Second)
	m.Observe(10*time.Second + 1)
	want := [LatencyBuckets]uint64{}
	want[0], want[1], want[len(LatencyBounds)-1], want[len(LatencyBounds)] = 2, 1, 1, 1
	require.Equal(t, want, m.Latency)
}

// TestMeterSub: the difference of two readings is what happened between
// them; readings of two runs (a counter went back) are refused.
func TestMeterSub(t *testing.T) {
	var m Meter
	m.Observe(time.Microsecond)
	before := m
	m.Observe(time.Millisecond)
	m.Observe(time.Millisecond)
	d, err := m.Sub(before)
	require.NoError(t, err)
	require.Equal(t, uint64(2), d.Events)
	require.Equal(t, 2*time.Millisecond, d.Busy)
	require.InDelta(t, 500+500*0.99*2/2, d.Quantile(0.99), 1e-9)
	_, err = before.Sub(m)
	require.ErrorIs(t, err, ErrMeterWentBack)
	odd := m
	odd.Latency[0] = 0 // the same events, another histogram
	_, err = odd.Sub(before)
	require.ErrorIs(t, err, ErrMeterWentBack)
}

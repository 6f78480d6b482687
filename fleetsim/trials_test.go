package fleetsim

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/rollout"
)

// trials is a hook that watches each host's trials across the channels:
// when each channel's version started on it (its trial runs the health
// window from there: the updates are healthy, so none ends early).
type trials struct {
	t       *testing.T
	started [][]int // per channel, per host: the tick its trial started, -1 before
	// overlapped counts the trials that started while another channel's
	// ran, of starts.
	overlapped, starts int
}

func newTrials(t *testing.T, k, hosts int) *trials {
	tr := &trials{t: t, started: make([][]int, k)}
	for c := range tr.started {
		tr.started[c] = make([]int, hosts)
		for h := range tr.started[c] {
			tr.started[c][h] = -1
		}
	}
	return tr
}

func (tr *trials) bucket(h int) int { return rollout.Bucket(fmt.Sprintf("h-%d", h)) }

func (tr *trials) event(s *sim, h int, kind uint8) {
	if kind != evAdopt || tr.started[s.c][h] >= 0 || s.state[h] == stOld {
		return
	}
	tr.started[s.c][h] = s.tick
	tr.starts++
	window := s.ticks(s.p.HealthWindow)
	for c := range tr.started {
		if c != s.c && tr.started[c][h] >= 0 && s.tick-tr.started[c][h] < window {
			tr.overlapped++
			return
		}
	}
}

func (tr *trials) step(*sim) {}

// TestOneTrialAtATime watches every host: with one trial at a time no
// trial starts while another channel's is in its health window, and at the
// end no version is left waiting for good (every one still to take is on a
// host that is away, or in a trial, or that has a check-in coming);
// without it, trials do overlap (the check can tell).
func TestOneTrialAtATime(t *testing.T) {
	p := Defaults()
	p.Hosts, p.Duration, p.Seed, p.Emergency = 20_000, 12*time.Hour, 5, true
	p.Scenario, p.Policy = Healthy, Ringfence
	const k = 3
	for _, one := range []bool{false, true} {
		tr := newTrials(t, k, p.Hosts)
		f, err := newFleet(p, k, one, tr)
		require.NoError(t, err)
		t.Logf("one trial at a time %v: %d trials, %d started while another ran", one, tr.starts, tr.overlapped)
		require.Greater(t, tr.starts, k*p.Hosts*9/10)
		if !one {
			require.Greater(t, tr.overlapped, tr.starts/2, "a host takes every channel's version at one check-in")
			continue
		}
		require.Zero(t, tr.overlapped)
		waiting := 0
		for h := range p.Hosts {
			if !f.pending(h) {
				continue
			}
			waiting++
			away := f.chans[0].flags[h]&fOffline != 0
			require.True(t, away || f.trial[h] != 0 || int(f.next[h]) >= f.tick, "host %d has a version waiting and nothing to start it", h)
		}
		t.Logf("%d hosts with a version still to take at the end", waiting)
	}
}

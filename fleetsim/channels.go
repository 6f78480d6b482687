package fleetsim

import (
	"fmt"
	"time"
)

// MaxChannels is the most channels Channels plays at once.
const MaxChannels = 16

// ChannelsResult is what one run of several channels measured.
type ChannelsResult struct {
	Channels int  `json:"channels"`
	OneTrial bool `json:"one_trial"`
	// Reach99 is when every channel had reached 99% of the fleet, Mean99
	// the mean over the channels of when each did (both -1 when a channel
	// never did).
	Reach99 time.Duration `json:"reach_99"`
	Mean99  time.Duration `json:"mean_reach_99"`
	// Waited is how many of the hosts' new versions waited for another
	// channel's trial to end (summed over the channels), Loaded how many
	// were taken.
	Waited int `json:"waited"`
	Loaded int `json:"loaded"`
	// Halted is how many channels' rollouts halted.
	Halted int `json:"halted"`
	// Runs are the channels' own results, in the daemon's order: at a
	// check-in, the first channel with a version for the host goes first.
	Runs []*Result `json:"runs"`
}

// Channels plays k content updates at once on one fleet, one per channel,
// each a healthy update under its own ringfence rollout (the real
// controller and gate, the default plan), all started at the same moment:
// the daemon of the product's many channels, where one host follows
// several. Each host checks in once for all its channels. With oneTrial a
// host runs one trial at a time (a crash after load cannot be pinned on
// one channel while two are in their health window): a version that
// arrives while another channel's trial runs on the host waits, and its
// trial starts at the host's first check-in after that trial ends (it
// passed its health window, p.HealthWindow, or was reverted or rolled
// back). Without it, trials overlap. p.Scenario and p.Policy are not used.
//
// Each channel draws its own background crashes at p.BackgroundRate; a
// real crash would count on every channel the host follows.
func Channels(p Params, k int, oneTrial bool) (*ChannelsResult, error) {
	// Fixed bakes: with promotion by the evidence and waits for it, each
	// channel's stages would move on its own draws of failures, and what
	// one trial at a time costs would drown in that noise.
	p.Scenario, p.Policy, p.FixedBakes = Healthy, Ringfence, true
	if err := p.Check(); err != nil {
		return nil, err
	}
	if k < 1 || k > MaxChannels {
		return nil, fmt.Errorf("fleetsim: %d channels: want 1..%d", k, MaxChannels)
	}
	f, err := newFleet(p, k, oneTrial, nil)
	if err != nil {
		return nil, err
	}
	out := &ChannelsResult{Channels: k, OneTrial: oneTrial}
	var sum time.Duration
	for _, s := range f.chans {
		r := s.res
		out.Runs = append(out.Runs, r)
		out.Waited += r.Waited
		out.Loaded += r.Loaded
		if r.Halted {
			out.Halted++
		}
		switch {
		case out.Reach99 < 0:
		case r.Reach99 < 0:
			out.Reach99 = -1
		default:
			out.Reach99 = max(out.Reach99, r.Reach99)
			sum += r.Reach99
		}
	}
	out.Mean99 = -1
	if out.Reach99 >= 0 {
		out.Mean99 = sum / time.Duration(k)
	}
	return out, nil
}

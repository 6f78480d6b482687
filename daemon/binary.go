package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/wire"
)

// ErrRestart is what Run returns after it put a new ringfenced binary in
// place: the caller exits non-zero so the service manager starts the new
// binary (selfupdate rolls it back if that start fails).
var ErrRestart = errors.New("daemon: a new ringfenced binary is in place; restart to run it")

// BinaryUpdate is the daemon's update of its own binary, through the same
// TUF repository: targets ringfenced/<goos>-<goarch>/<version>, signed by the
// top-level targets role.
type BinaryUpdate struct {
	// Version is the running binary's; Platform is "<goos>-<goarch>".
	Version, Platform string
	// Apply puts the TUF-verified file at path in place (selfupdate.Apply).
	Apply func(path string, sum [32]byte, version string) error
	// Failed lists versions that failed their first start here.
	Failed func() []string
}

// updateBinary applies the newest ringfenced binary for this platform if
// it is newer than the running one and never failed here.
func (p *poller) updateBinary(ctx context.Context) (PollResult, bool) {
	b := p.binary
	if b == nil || b.Apply == nil {
		return PollResult{}, false
	}
	var failed []string
	if b.Failed != nil {
		failed = b.Failed()
	}
	best, name := "", ""
	for n := range p.client.Targets("targets") {
		goos, goarch, v, ok := rollout.ParseBinaryTarget(n)
		_, refused := p.binRefused[v]
		if !ok || goos+"-"+goarch != b.Platform || slices.Contains(failed, v) || refused || compareVersions(v, b.Version) <= 0 {
			continue
		}
		if best == "" || compareVersions(v, best) > 0 {
			best, name = v, n
		}
	}
	if best == "" {
		return PollResult{}, false
	}
	tf, err := p.client.Target(ctx, name)
	if err != nil {
		return PollResult{Action: ActionFailed, Why: "self-update: " + err.Error()}, true
	}
	var sum [32]byte
	if h := tf.Hashes["sha256"]; len(h) == len(sum) {
		copy(sum[:], h)
	} else {
		return PollResult{Action: ActionFailed, Why: "self-update: " + name + " has no sha256 in the metadata (ringfenced pins its binary by SHA-256; publish it with publish-binary)"}, true
	}
	path, err := p.client.Download(ctx, name)
	if err != nil {
		return PollResult{Action: ActionFailed, Why: "self-update: download: " + err.Error()}, true
	}
	if err := b.Apply(path, sum, best); err != nil {
		// Not tried again this run: a binary that cannot be put in place
		// (a packaged host's read-only /usr/bin) would be downloaded and
		// refused at every poll.
		why := fmt.Sprintf("self-update to %s: %v (not tried again until ringfenced restarts)", best, err)
		p.binRefused[best] = why
		return PollResult{Action: ActionFailed, Why: why}, true
	}
	p.out.add(wire.Event{Kind: wire.EventBinaryUpdated, Reason: fmt.Sprintf("%s -> %s", b.Version, best)})
	return PollResult{Action: ActionSelfUpdated, Why: fmt.Sprintf("ringfenced %s is in place (running %s); restarting", best, b.Version)}, true
}

// compareVersions compares dotted numeric versions ("1.10" > "1.9");
// anything else compares as strings.
func compareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(pa), len(pb)) {
		var x, y string
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		nx, ex := strconv.ParseUint(x, 10, 64)
		ny, ey := strconv.ParseUint(y, 10, 64)
		if (ex == nil || x == "") && (ey == nil || y == "") {
			if nx != ny {
				if nx < ny {
					return -1
				}
				return 1
			}
			continue
		}
		if c := strings.Compare(x, y); c != 0 {
			return c
		}
	}
	return 0
}

// Package clock is the time Ringfence's logic reads. Code that stamps,
// expires, backs off or waits takes a Clock instead of calling time.Now or
// time.After: production passes System, tests a Fake they move by hand, so
// that no test sleeps to wait for a deadline.
package clock

import (
	"slices"
	"sync"
	"time"
)

// Clock tells the time and makes one-shot timers. The packages that only
// read the time (hostdb, installer, tufrepo, fleetdb, server, the telemetry
// sender) take a Clock too and call Now alone: one interface, one system
// clock, one fake.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives the time once d has passed
	// (at once when d <= 0), like time.After.
	After(d time.Duration) <-chan time.Time
}

// System is the operating system's clock.
type System struct{}

// Now returns time.Now().
func (System) Now() time.Time { return time.Now() }

// After returns time.After(d).
func (System) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Fake is a Clock that moves only when told (Advance, Set). A timer made
// by After fires when the time reaches its deadline, on the goroutine that
// moved the clock; its channel is buffered, so firing never blocks. The zero
// Fake stands at the zero time. It is safe for concurrent use.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers []timer
}

type timer struct {
	at time.Time
	c  chan time.Time
}

// NewFake returns a Fake standing at t.
func NewFake(t time.Time) *Fake { return &Fake{now: t} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After returns a channel that receives the fake time once it has moved on
// by d (at once when d <= 0).
func (f *Fake) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := make(chan time.Time, 1)
	if d <= 0 {
		c <- f.now
		return c
	}
	f.timers = append(f.timers, timer{at: f.now.Add(d), c: c})
	return c
}

// Advance moves the time on by d and fires every timer that is due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.set(f.now.Add(d))
}

// Set moves the time to t (backwards too: a host's clock can be set back)
// and fires every timer that is due.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.set(t)
}

func (f *Fake) set(t time.Time) {
	f.now = t
	f.timers = slices.DeleteFunc(f.timers, func(tm timer) bool {
		if tm.at.After(t) {
			return false
		}
		tm.c <- t
		return true
	})
}

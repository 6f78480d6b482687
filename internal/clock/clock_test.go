package clock_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/clock"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// fired reports what c received, without waiting: a Fake's timers fire
// while Advance or Set runs, so by the time they return it is there.
func fired(c <-chan time.Time) (time.Time, bool) {
	select {
	case t := <-c:
		return t, true
	default:
		return time.Time{}, false
	}
}

func TestFakeTimers(t *testing.T) {
	tests := []struct {
		name  string
		after time.Duration // the timer, made at t0
		move  func(*clock.Fake)
		fires bool
		at    time.Time // the time it receives
	}{
		{"zero fires at once", 0, func(*clock.Fake) {}, true, t0},
		{"negative fires at once", -time.Second, func(*clock.Fake) {}, true, t0},
		{"not yet", time.Minute, func(f *clock.Fake) { f.Advance(59 * time.Second) }, false, time.Time{}},
		{"at its deadline", time.Minute, func(f *clock.Fake) { f.Advance(time.Minute) }, true, t0.Add(time.Minute)},
		{"past it", time.Minute, func(f *clock.Fake) { f.Advance(time.Hour) }, true, t0.Add(time.Hour)},
		{"in steps", time.Minute, func(f *clock.Fake) { f.Advance(30 * time.Second); f.Advance(30 * time.Second) }, true, t0.Add(time.Minute)},
		{"set past it", time.Minute, func(f *clock.Fake) { f.Set(t0.Add(2 * time.Minute)) }, true, t0.Add(2 * time.Minute)},
		{"set back", time.Minute, func(f *clock.Fake) { f.Set(t0.Add(-time.Hour)) }, false, time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := clock.NewFake(t0)
			c := f.After(tc.after)
			tc.move(f)
			got, ok := fired(c)
			if ok != tc.fires || got != tc.at {
				t.Fatalf("fired %v at %v, want %v at %v", ok, got, tc.fires, tc.at)
			}
			if _, again := fired(c); again {
				t.Fatal("a timer fired twice")
			}
		})
	}
}

// TestFakeSeveral: of several timers, each fires once, when the time
// reaches its deadline; a clock set back fires none.
func TestFakeSeveral(t *testing.T) {
	f := clock.NewFake(t0)
	var cs []<-chan time.Time
	for _, d := range []time.Duration{3 * time.Minute, time.Minute, 2 * time.Minute, time.Minute} {
		cs = append(cs, f.After(d))
	}
	var got []int
	f.Set(t0.Add(-time.Hour))
	for i, c := range cs {
		if _, ok := fired(c); ok {
			t.Fatalf("timer %d fired with the clock set back", i)
		}
	}
	f.Set(t0.Add(90 * time.Second))
	for i, c := range cs {
		if _, ok := fired(c); ok {
			got = append(got, i)
		}
	}
	f.Advance(time.Hour)
	for i, c := range cs {
		if _, ok := fired(c); ok {
			got = append(got, i)
		}
	}
	if want := []int{1, 3, 0, 2}; !slices.Equal(got, want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
	if now := f.Now(); now != t0.Add(90*time.Second+time.Hour) {
		t.Fatalf("Now = %v", now)
	}
}

// TestFakeConcurrent: goroutines make timers and read the time while
// another moves it (go test -race checks the locking); every timer fires.
func TestFakeConcurrent(t *testing.T) {
	f := clock.NewFake(t0)
	const n = 50
	cs := make(chan (<-chan time.Time), n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = f.Now()
			cs <- f.After(time.Duration(i+1) * time.Second)
		}()
	}
	for range n {
		f.Advance(time.Millisecond)
	}
	wg.Wait()
	close(cs)
	f.Advance(time.Hour)
	for c := range cs {
		if _, ok := fired(c); !ok {
			t.Fatal("a timer did not fire")
		}
	}
}

func TestSystem(t *testing.T) {
	var c clock.Clock = clock.System{}
	before := time.Now()
	if now := c.Now(); now.Before(before) {
		t.Fatalf("System.Now %v is before %v", now, before)
	}
	if _, ok := <-c.After(0); !ok {
		t.Fatal("System.After(0) did not fire")
	}
}

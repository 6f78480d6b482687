package sensor

import (
	"fmt"
	"testing"
	"time"

	"github.com/ringfence/ringfence/validator"
	"github.com/stretchr/testify/require"
)

// costlyPattern passes validation (three stars, MaxPatternStars) and never
// matches the agent's events (they hold no '!'), and every '?' after a star
// accepts any byte: the backtracking glob tries every way to place the
// three stars over the field, about len(s)^3/6 of them, before failing.
const costlyPattern = "*?*?*?!"

// costlyFile is an IPC file of n instances, each one pattern on field 0.
func costlyFile(t testing.TB, n int) *validator.ChannelFile {
	t.Helper()
	caps := DefaultCapabilities()
	tt := caps.Template(7)
	f := &validator.ChannelFile{Channel: 291, ContentVersion: 1, TemplateType: 7, TemplateVersion: 1, Fields: make([]validator.FieldType, len(tt.Inputs))}
	for i := range f.Fields {
		f.Fields[i] = tt.Inputs[i].Type
	}
	for i := range n {
		f.Instances = append(f.Instances, validator.Instance{ID: uint32(i + 1), Action: validator.ActionAlert,
			Matchers: []validator.Matcher{{Field: 0, Kind: validator.MatchPattern, Str: costlyPattern}}})
	}
	// What a host checks before it loads content: this passes.
	data, err := validator.Encode(f)
	require.NoError(t, err)
	_, problems := validator.Validate(data, caps, validator.Options{})
	require.False(t, problems.HasErrors(), "%v", problems)
	return f
}

// programOf prepares f in an interpreter of sensor version v (the 7.11
// built-in manifest, renamed).
func programOf(t testing.TB, f *validator.ChannelFile, v string) *Program {
	t.Helper()
	caps := *DefaultCapabilities()
	caps.Sensor = v
	p, err := New(&caps).Prepare(f)
	require.NoError(t, err)
	return p
}

// TestLegacyGlobCost: on the event stream the reference agent evaluates
// (RandomEvents) and on fields of the sensor's full input length, content
// with a costly pattern costs the 7.11 interpreter thousands of times the
// steps it costs 7.12, for the same verdicts; 7.12's steps stay within
// len(pattern) per input byte. Steps, not time: the count does not depend
// on the machine (BenchmarkLegacyGlobCost has the time).
func TestLegacyGlobCost(t *testing.T) {
	f := costlyFile(t, 1)
	legacy, current := programOf(t, f, "7.11"), programOf(t, f, "7.12")
	long := Event{TemplateType: 7, Fields: []Value{{Str: string(make([]byte, MaxInputLen))}}}
	events := []Event{long}
	next := RandomEvents(f, 1)
	for range 200 {
		events = append(events, next())
	}
	for _, ev := range events {
		require.Equal(t, legacy.Eval(ev), current.Eval(ev))
	}
	require.LessOrEqual(t, current.steps, uint64(len(events)*(len(costlyPattern)+1)*MaxInputLen), "the current glob is quadratic at worst")
	ratio := float64(legacy.steps) / float64(current.steps)
	t.Logf("%d events: 7.11 took %d glob steps, 7.12 %d (%.0fx)", len(events), legacy.steps, current.steps, ratio)
	require.Greater(t, ratio, 1000.0)

	// One full-length field alone: about 256^3/6 ways to place the stars.
	legacy.steps, current.steps = 0, 0
	legacy.Eval(long)
	current.Eval(long)
	require.Greater(t, legacy.steps, uint64(MaxInputLen*MaxInputLen*MaxInputLen/6))
	require.LessOrEqual(t, current.steps, uint64(2*MaxInputLen))
	t.Logf("one %d-byte field: 7.11 took %d glob steps, 7.12 %d", MaxInputLen, legacy.steps, current.steps)
}

// BenchmarkLegacyGlobCost times the agent's event stream over content with
// one and four costly patterns on 7.11 and 7.12 interpreters, in the same
// run, and reports the ratio (legacy-x).
func BenchmarkLegacyGlobCost(b *testing.B) {
	for _, n := range []int{1, 4} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			f := costlyFile(b, n)
			next := RandomEvents(f, 1)
			events := make([]Event, 1000)
			for i := range events {
				events[i] = next()
			}
			var per [2]time.Duration
			for range b.N {
				for i, v := range []string{"7.11", "7.12"} {
					p := programOf(b, f, v)
					start := time.Now()
					for _, ev := range events {
						p.Eval(ev)
					}
					per[i] += time.Since(start)
				}
			}
			ev := float64(b.N * len(events))
			b.ReportMetric(float64(per[0].Nanoseconds())/ev, "7.11-ns/event")
			b.ReportMetric(float64(per[1].Nanoseconds())/ev, "7.12-ns/event")
			b.ReportMetric(float64(per[0])/float64(per[1]), "legacy-x")
		})
	}
}

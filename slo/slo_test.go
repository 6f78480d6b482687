package slo_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/slo"
)

func f(x float64) *float64 { return &x }

func TestValidate(t *testing.T) {
	ok := slo.Check{Name: "error-rate", Query: "sum(rate(errors_total[5m]))", Max: f(0.05), Grace: 2 * time.Minute}
	with := func(change func(*slo.Check)) slo.Check {
		c := ok
		change(&c)
		return c
	}
	for _, tc := range []struct {
		name  string
		check slo.Check
		want  string // "" valid
	}{
		{"max only", ok, ""},
		{"min only", with(func(c *slo.Check) { c.Max, c.Min = nil, f(0.99) }), ""},
		{"min equal to max", with(func(c *slo.Check) { c.Min = f(0.05) }), ""},
		{"no grace", with(func(c *slo.Check) { c.Grace = 0 }), ""},
		{"64-byte name", with(func(c *slo.Check) { c.Name = strings.Repeat("n", 64) }), ""},
		{"4096-byte query", with(func(c *slo.Check) { c.Query = strings.Repeat("1", 4096) }), ""},
		{"no name", with(func(c *slo.Check) { c.Name = "" }), "name is 1 to 64 bytes"},
		{"65-byte name", with(func(c *slo.Check) { c.Name = strings.Repeat("n", 65) }), "name is 1 to 64 bytes (got 65)"},
		{"a control character in the name", with(func(c *slo.Check) { c.Name = "a\nb" }), "printable"},
		{"no query", with(func(c *slo.Check) { c.Query = "" }), "query is 1 to 4096 bytes"},
		{"4097-byte query", with(func(c *slo.Check) { c.Query = strings.Repeat("1", 4097) }), "(got 4097)"},
		{"query not UTF-8", with(func(c *slo.Check) { c.Query = "up\xff" }), "not UTF-8"},
		{"no bound", with(func(c *slo.Check) { c.Max = nil }), "give max, min or both"},
		{"NaN bound", with(func(c *slo.Check) { c.Max = f(math.NaN()) }), "finite"},
		{"infinite bound", with(func(c *slo.Check) { c.Min = f(math.Inf(-1)) }), "finite"},
		{"min above max", with(func(c *slo.Check) { c.Min = f(0.1) }), "min 0.1 is above max 0.05"},
		{"negative grace", with(func(c *slo.Check) { c.Grace = -time.Second }), "grace -1s is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.check.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				require.NoError(t, slo.Validate([]slo.Check{tc.check}))
				return
			}
			require.ErrorIs(t, err, slo.ErrInvalid)
			require.ErrorContains(t, err, tc.want)
			require.ErrorIs(t, slo.Validate([]slo.Check{ok, tc.check}), slo.ErrInvalid, "the list says so too")
		})
	}
}

func TestValidateList(t *testing.T) {
	require.NoError(t, slo.Validate(nil))
	var cs []slo.Check
	for i := range slo.MaxChecks {
		cs = append(cs, slo.Check{Name: fmt.Sprint("c", i), Query: "1", Max: f(2)})
	}
	require.NoError(t, slo.Validate(cs))
	err := slo.Validate(append(cs, slo.Check{Name: "one too many", Query: "1", Max: f(2)}))
	require.ErrorIs(t, err, slo.ErrInvalid)
	require.ErrorContains(t, err, "17 checks; the limit is 16")
	err = slo.Validate([]slo.Check{cs[0], cs[1], cs[0]})
	require.ErrorContains(t, err, `check "c0" is named twice`)
	require.True(t, errors.Is(err, slo.ErrInvalid))
}

// TestExpand: the placeholders become the rollout's channel and version,
// wherever and however often they appear; a query without any is left as
// it is; an unknown one is refused with the known ones named.
func TestExpand(t *testing.T) {
	c := slo.Check{Name: "errors", Max: f(1),
		Query: `sum(rate(errors_total{version="{{version}}",channel="{{channel}}"}[5m])) / sum(rate(requests_total{version="{{version}}"}[5m]))`}
	got, err := c.Expand(291, 1002)
	require.NoError(t, err)
	require.Equal(t, `sum(rate(errors_total{version="1002",channel="291"}[5m])) / sum(rate(requests_total{version="1002"}[5m]))`, got.Query)
	require.Equal(t, c.Name, got.Name)
	require.Equal(t, c.Max, got.Max)
	require.Contains(t, c.Query, "{{version}}", "the check itself is unchanged")

	plain := slo.Check{Name: "up", Query: `sum(up{job="agents"})`, Min: f(1)}
	got, err = plain.Expand(291, 1002)
	require.NoError(t, err)
	require.Equal(t, plain, got)

	for _, q := range []string{`sum(x{version="{{ version }}"})`, `sum(x{v="{{from_version}}"})`, `sum(x{v="{{version}"})`} {
		_, err = slo.Check{Name: "typo", Query: q, Max: f(1)}.Expand(291, 1002)
		require.ErrorIs(t, err, slo.ErrInvalid, q)
		require.ErrorContains(t, err, `check "typo": unknown placeholder at "{{`, q)
		require.ErrorContains(t, err, "a query may use {{version}} and {{channel}}", q)
	}
}

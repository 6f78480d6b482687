package compat_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/compat"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, custom string
		want         compat.Constraint
		err          string
	}{
		{name: "no custom metadata", custom: ""},
		{name: "null", custom: "null"},
		{name: "someone else's members only", custom: `{"vendor": {"x": 1}}`},
		{name: "constrained", custom: `{"ringfence": {"sensors": ["7.12"], "excluded": {"7.11": "FIELD_NOT_SUPPLIED"}}, "vendor": 1}`,
			want: compat.Constraint{Sensors: []string{"7.12"}, Excluded: map[string]string{"7.11": "FIELD_NOT_SUPPLIED"}}},
		{name: "not an object", custom: `[1]`, err: "not a JSON object"},
		{name: "unknown member", custom: `{"ringfence": {"sensors": ["7.12"], "sensor": "7.11"}}`, err: "unknown field"},
		{name: "bad version", custom: `{"ringfence": {"sensors": ["7.12 beta"]}}`, err: "only letters"},
		{name: "empty version", custom: `{"ringfence": {"sensors": [""]}}`, err: "1 to 64 bytes"},
		{name: "twice", custom: `{"ringfence": {"sensors": ["7.12", "7.12"]}}`, err: "listed twice"},
		{name: "allowed and excluded", custom: `{"ringfence": {"sensors": ["7.12"], "excluded": {"7.12": "x"}}}`, err: "both allowed and excluded"},
		{name: "excludes but allows none", custom: `{"ringfence": {"excluded": {"7.11": "x"}}}`, err: "allows none"},
		{name: "a reason that does not print", custom: `{"ringfence": {"sensors": ["7.12"], "excluded": {"7.11": "x\u001b[2J"}}}`, err: "does not print"},
		{name: "too many", custom: `{"ringfence": {"sensors": [` + strings.Repeat(`"a",`, 64) + `"b"]}}`, err: "the limit is 64"},
		{name: "too large", custom: `{"x": "` + strings.Repeat("a", compat.MaxCustom) + `"}`, err: "custom metadata of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := compat.Parse([]byte(tc.custom))
			if tc.err != "" {
				require.ErrorIs(t, err, compat.ErrConstraint)
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestCustomRoundTrip(t *testing.T) {
	none, err := compat.Constraint{}.Custom()
	require.NoError(t, err)
	require.Nil(t, none, "unconstrained content carries no custom metadata")

	c := compat.Constraint{Sensors: []string{"7.13", "7.12"}, Excluded: map[string]string{"7.11": "FIELD_NOT_SUPPLIED"}}
	raw, err := c.Custom()
	require.NoError(t, err)
	require.JSONEq(t, `{"ringfence": {"sensors": ["7.12", "7.13"], "excluded": {"7.11": "FIELD_NOT_SUPPLIED"}}}`, string(raw))
	back, err := compat.Parse(raw)
	require.NoError(t, err)
	require.Equal(t, []string{"7.12", "7.13"}, back.Sensors)
	require.Equal(t, c.Excluded, back.Excluded)

	_, err = compat.Constraint{Sensors: []string{"a b"}}.Custom()
	require.ErrorIs(t, err, compat.ErrConstraint, "Custom never writes what Parse would refuse")
}

func TestAllows(t *testing.T) {
	only712 := compat.Constraint{Sensors: []string{"7.12"}}
	require.True(t, only712.Allows("7.12"))
	require.False(t, only712.Allows("7.11"))
	require.False(t, only712.Allows(""), "a host that does not say its sensor is not known to be compatible")
	require.True(t, compat.Constraint{}.Allows(""))
	require.True(t, compat.Constraint{}.Allows("7.11"))

	require.True(t, only712.Within(only712))
	require.True(t, only712.Within(compat.Constraint{}))
	require.False(t, compat.Constraint{}.Within(only712), "a stage open to any sensor widens a constrained version")
	require.False(t, compat.Constraint{Sensors: []string{"7.11", "7.12"}}.Within(only712))

	require.Equal(t, "any sensor", compat.Constraint{}.String())
	require.Equal(t, "sensor 7.12 only; excludes 7.11 (FIELD_NOT_SUPPLIED)",
		compat.Constraint{Sensors: []string{"7.12"}, Excluded: map[string]string{"7.11": "FIELD_NOT_SUPPLIED"}}.String())
	require.Equal(t, "sensors 7.9, 7.12 only; excludes 7.8 (FIELD_NOT_SUPPLIED), 7.10 (preflight)",
		compat.Constraint{Sensors: []string{"7.12", "7.9"}, Excluded: map[string]string{"7.10": "preflight", "7.8": "FIELD_NOT_SUPPLIED"}}.String())
}

func TestCompare(t *testing.T) {
	in := []string{"7.12.1", "7.10", "7.8-rc1", "7.9", "7.12", "7.8", "10.0", "7.08"}
	slices.SortFunc(in, compat.Compare)
	require.Equal(t, []string{"7.08", "7.8", "7.8-rc1", "7.9", "7.10", "7.12", "7.12.1", "10.0"}, in, "digits by value (a tie, as text), the rest as text")
}

package daemon

import "testing"

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.10", "1.9", 1}, {"1.9", "1.10", -1}, {"2", "2.0", 0}, {"2.0.1", "2", 1},
		{"1.0", "1.0", 0}, {"1.0-rc1", "1.0-rc2", -1}, {"10", "9", 1},
	} {
		if got := compareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

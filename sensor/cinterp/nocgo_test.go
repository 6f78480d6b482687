//go:build !cgo

package cinterp

import "testing"

// TestNeedsCgo says why the differential tests did not run.
func TestNeedsCgo(t *testing.T) {
	t.Skip("cgo is off (CGO_ENABLED=0, or no C compiler): the C interpreter in sensor/c was not checked against Go; install gcc (make deps) and build with CGO_ENABLED=1")
}

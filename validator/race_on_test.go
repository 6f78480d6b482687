//go:build race

package validator_test

// raceEnabled is true when the tests run under the race detector, whose
// runtime (TSan) cannot start inside a small RLIMIT_DATA.
const raceEnabled = true

// Package await waits, in tests, for a condition another process brings
// about: a child's file, a server's log line, a database row. Where the
// code under test takes a clock, tests inject it instead; this is for what
// runs outside the test's process and cannot be told the time.
package await

import (
	"fmt"
	"time"
)

// TB is the part of testing.TB Until uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// Until calls cond every interval until it returns nil, and fails t with
// msg (formatted with args) and cond's last error once limit has passed.
// cond runs at least once, and its last call is after the deadline, so a
// slow machine that meets the condition just in time still passes.
func Until(t TB, limit, interval time.Duration, cond func() error, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s (last: %v)", fmt.Sprintf(msg, args...), err)
			return
		}
		time.Sleep(interval)
	}
}

// Package failpoint marks the crash boundaries of durable operations so that
// crash-point tests can kill the process at each one in turn.
//
// A failpoint is a named call, failpoint.Hit("installer/stage/after-write"),
// placed between two durable steps. In production it costs one string compare
// against an empty string. Tests run the operation in a child process with
// one of two environment variables set:
//
//   - RINGFENCE_FAILPOINT=NAME: the process kills itself (SIGKILL on Unix,
//     TerminateProcess on Windows) the first time it reaches NAME, so nothing
//     after that point runs: no deferred calls, no buffered writes, no exit
//     handlers. That is what a power cut or a kernel panic leaves behind.
//   - RINGFENCE_FAILPOINT_TRACE=1: every failpoint reached is written to
//     stderr as "failpoint: NAME", so a test can first discover which crash
//     points an operation passes through, then kill it at each one.
package failpoint

import (
	"fmt"
	"os"
)

// Environment variables read once at start-up.
const (
	EnvKill  = "RINGFENCE_FAILPOINT"
	EnvTrace = "RINGFENCE_FAILPOINT_TRACE"
)

// TracePrefix starts every line written in trace mode.
const TracePrefix = "failpoint: "

var (
	killAt = os.Getenv(EnvKill)
	trace  = os.Getenv(EnvTrace) != ""
)

// Hit marks the crash boundary name. It returns normally unless the process
// was started to die at name.
func Hit(name string) {
	if trace {
		fmt.Fprintf(os.Stderr, "%s%s\n", TracePrefix, name)
	}
	if killAt != "" && killAt == name {
		killSelf()
	}
}

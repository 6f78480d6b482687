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
//     NAME#N kills it at the Nth time it reaches NAME instead (an operation
//     that writes two files passes the same helper's failpoints twice).
//   - RINGFENCE_FAILPOINT_TRACE=1: every failpoint reached is written to
//     stderr as "failpoint: NAME", so a test can first discover which crash
//     points an operation passes through, then kill it at each one.
package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// Environment variables read once at start-up.
const (
	EnvKill  = "RINGFENCE_FAILPOINT"
	EnvTrace = "RINGFENCE_FAILPOINT_TRACE"
)

// TracePrefix starts every line written in trace mode.
const TracePrefix = "failpoint: "

var (
	killAt, killHit = parseKill(os.Getenv(EnvKill))
	trace           = os.Getenv(EnvTrace) != ""
	hits            atomic.Int64 // hits of killAt so far
)

// parseKill splits "NAME#N" into NAME and N (1 when absent).
func parseKill(v string) (string, int64) {
	name, n, ok := strings.Cut(v, "#")
	if !ok {
		return v, 1
	}
	k, err := strconv.ParseInt(n, 10, 64)
	if err != nil || k < 1 {
		return v, 1
	}
	return name, k
}

// Enabled reports whether the process was started to die at name. A caller
// uses it to stage a partial write (half a sector, say) before Hit kills it.
// With NAME#N, it reports true only on the way to the Nth hit.
func Enabled(name string) bool {
	return killAt != "" && killAt == name && hits.Load() == killHit-1
}

// Hit marks the crash boundary name. It returns normally unless the process
// was started to die at name.
func Hit(name string) {
	if trace {
		fmt.Fprintf(os.Stderr, "%s%s\n", TracePrefix, name)
	}
	if killAt != "" && killAt == name && hits.Add(1) == killHit {
		killSelf()
	}
}

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
//
// A third variable removes a step instead of dying at one:
//
//   - RINGFENCE_SKIP=NAME[,NAME...]: Skip(NAME) reports true, and the code
//     around it leaves out the step it guards (a sync). NAME#N leaves out
//     only the Nth pass (the second record write of an operation, say). The
//     power-cut tests use it to show that each sync they keep is needed:
//     with it skipped, some cut leaves a state that breaks an invariant.
package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Environment variables read once at start-up.
const (
	EnvKill  = "RINGFENCE_FAILPOINT"
	EnvTrace = "RINGFENCE_FAILPOINT_TRACE"
	EnvSkip  = "RINGFENCE_SKIP"
)

// TracePrefix starts every line written in trace mode.
const TracePrefix = "failpoint: "

var (
	killAt, killHit = parseKill(os.Getenv(EnvKill))
	trace           = os.Getenv(EnvTrace) != ""
	skip            = parseSkip(os.Getenv(EnvSkip))
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

// parseSkip maps each name to skip to the pass to skip (0: every pass).
func parseSkip(v string) map[string]int64 {
	if v == "" {
		return nil
	}
	m := map[string]int64{}
	for _, item := range strings.Split(v, ",") {
		name, n := parseKill(strings.TrimSpace(item))
		if !strings.Contains(item, "#") {
			n = 0
		}
		m[name] = n
	}
	return m
}

var (
	skipMu     sync.Mutex
	skipPasses = map[string]int64{}
)

// Skip reports whether the process was started to leave out the step name
// guards on this pass (see EnvSkip). In production it is one lookup in a
// nil map.
func Skip(name string) bool {
	n, ok := skip[name]
	if !ok {
		return false
	}
	if n == 0 {
		return true
	}
	skipMu.Lock()
	defer skipMu.Unlock()
	skipPasses[name]++
	return skipPasses[name] == n
}

// Package pgtest runs a throwaway PostgreSQL server for tests: a cluster per
// test binary, made with initdb in a directory of its own under /tmp and
// started with pg_ctl, and a fresh database per test (NewDatabase). The
// server listens on a unix socket in that directory only, never on TCP, with
// a port number chosen per cluster (it names the socket file), so several
// test binaries run side by side. Authentication is trust; the superuser is
// the OS user the server runs as. Durability settings are PostgreSQL's
// defaults (fsync on, synchronous_commit on): a commit survives Restart and
// RestartImmediate as it would a crash.
//
// Who runs it. PostgreSQL refuses to run as root. A test running as root (CI
// does) runs initdb, pg_ctl and so the server as the postgres user (which
// Debian's package creates), or nobody where there is none, and gives its
// directory to that user; psql, the client that creates and drops the
// databases, runs as the test's own user. A test running as anyone else runs
// everything as itself.
//
// Where PostgreSQL is not installed (no initdb, pg_ctl, postgres and psql in
// /usr/lib/postgresql/*/bin or on PATH) or cannot start, Start skips the test
// with a message that says why and that 'make deps' installs postgresql; with
// RINGFENCE_REQUIRE_POSTGRES=1 (make test-postgres) it fails it instead.
//
// Stopping. Main (TestMain) stops the cluster when the tests are done, and
// on SIGINT or SIGTERM. A test binary that dies otherwise (a panic, a test
// timeout, SIGKILL) cannot stop it: pg_ctl starts the server as a daemon, in
// its own session, and PostgreSQL has no setting that makes it exit with the
// process that started it. So each cluster's directory,
// /tmp/ringfence-pgtest-*, holds owner.lock, which its test process keeps
// locked (flock) as long as it lives; the first Start of every test process
// stops (immediate shutdown) and removes the clusters whose lock it can take.
// (A server whose directory is removed under it exits on its own within
// about a minute, when it next finds its files gone.)
package pgtest

import (
	"fmt"
	"os"
	"testing"
)

// EnvRequire: when set to 1, Start fails the test instead of skipping when
// PostgreSQL cannot run here (make test-postgres sets it).
const EnvRequire = "RINGFENCE_REQUIRE_POSTGRES"

// Main is for TestMain: it runs the tests and then stops the package's
// cluster if one was started (and any NewCluster left running). Usage:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	stopOnSignal()
	code := m.Run()
	if err := stopAll(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: stopping the test PostgreSQL server: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// unavailable skips t with why, or fails it when EnvRequire is set.
func unavailable(t testing.TB, why error) {
	t.Helper()
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("pgtest: %v\n(%s=1: the PostgreSQL tests must run here, not skip)", why, EnvRequire)
	}
	t.Skipf("pgtest: %v", why)
}

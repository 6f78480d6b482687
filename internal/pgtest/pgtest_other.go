//go:build !unix

package pgtest

import (
	"errors"
	"testing"
)

// Cluster is one running PostgreSQL server. There is none on this system:
// the harness runs on Linux and other Unix systems only.
type Cluster struct{}

var errNoUnix = errors.New("the PostgreSQL tests run on Linux (and other Unix systems) only: the harness runs initdb and pg_ctl there")

// Start skips t (or fails it when EnvRequire is set): the harness runs on
// Unix only.
func Start(t testing.TB) *Cluster {
	t.Helper()
	unavailable(t, errNoUnix)
	return nil
}

// NewCluster skips t as Start does.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	unavailable(t, errNoUnix)
	return nil
}

// NewDatabase is never reached: Start skipped.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	t.Fatal(errNoUnix)
	return ""
}

// Restart is never reached: Start skipped.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	t.Fatal(errNoUnix)
}

// RestartImmediate is never reached: Start skipped.
func (c *Cluster) RestartImmediate(t testing.TB) {
	t.Helper()
	t.Fatal(errNoUnix)
}

// Stop does nothing.
func (c *Cluster) Stop() error { return nil }

// SocketDir, Port, User, LogFile and ConnString have nothing to say here.
func (c *Cluster) SocketDir() string { return "" }

// Port is 0: no server.
func (c *Cluster) Port() int { return 0 }

// User is empty: no server.
func (c *Cluster) User() string { return "" }

// LogFile is empty: no server.
func (c *Cluster) LogFile() string { return "" }

// ConnString is empty: no server.
func (c *Cluster) ConnString(db string) string { return "" }

func stopOnSignal() {}

func stopAll() error { return nil }

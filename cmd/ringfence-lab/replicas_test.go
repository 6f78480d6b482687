package main

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/balancer"
	"github.com/ringfence/ringfence/internal/cli"
	"github.com/ringfence/ringfence/internal/pgtest"
)

// TestMain stops the test PostgreSQL server (internal/pgtest) at the end.
func TestMain(m *testing.M) { pgtest.Main(m) }

// TestLabReplicasPostgres is TestLab with the server as three replicas on
// a new PostgreSQL database behind haproxy (--replicas 3 --db): every
// scenario passes and every host ends on good content, as with one server.
func TestLabReplicasPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 3 server replicas, haproxy and 20 daemons for about 130 s")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the lab stops its children with SIGINT and a parent-death signal: Linux")
	}
	if _, err := balancer.Find(); err != nil {
		t.Skipf("SKIPPED: %v", err)
	}
	dsn := pgtest.Start(t).NewDatabase(t) // skips where PostgreSQL is not installed
	rep, timeline := runLab(t, "--replicas", "3", "--db", dsn)
	require.Equal(t, 3, rep.Replicas)
	require.Equal(t, "3 ringfence-server replicas on one PostgreSQL database, behind haproxy", rep.Servers)
	require.Contains(t, timeline, "3 ringfence-server serve replicas on one PostgreSQL database")
	require.Contains(t, timeline, "haproxy in front of them")
}

// TestReplicasUsage: --replicas needs --db, at most MaxReplicas, and --db
// takes a PostgreSQL URL that no message quotes.
func TestReplicasUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--replicas", "3"}, "give --db postgres://... too"},
		{[]string{"--db", "postgres://u@h/d", "--replicas", "6"}, "--replicas 6: want 1 to 5"},
		{[]string{"--db", "postgres://u@h/d", "--replicas", "-1"}, "--replicas -1: want 1 to 5"},
		{[]string{"--db", "mysql://u:secret@h/d"}, "--db takes a postgres:// or postgresql:// URL"},
	} {
		var stdout, stderr bytes.Buffer
		require.Equal(t, cli.ExitUsage, run(tc.args, &stdout, &stderr), "%v", tc.args)
		require.Contains(t, stderr.String(), tc.want, "%v", tc.args)
		require.NotContains(t, stderr.String(), "secret")
	}
	require.NoError(t, checkReplicas("postgresql://u@h/d", 0))
	require.NoError(t, checkReplicas("postgres://u@h/d", 5))
	require.NoError(t, checkReplicas("", 0))
}

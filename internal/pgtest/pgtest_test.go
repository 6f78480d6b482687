package pgtest_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ringfence/ringfence/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func exec(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func values(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT v FROM kv ORDER BY k")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPgSharedCluster: Start gives every test the same cluster, and the
// connection string names its socket directory and port.
func TestPgSharedCluster(t *testing.T) {
	start := time.Now()
	c := pgtest.Start(t)
	t.Logf("Start took %v (the first Start of the binary makes the cluster)", time.Since(start))
	if c2 := pgtest.Start(t); c2 != c {
		t.Fatal("a second Start gave another cluster")
	}
	dsn := c.NewDatabase(t)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != c.SocketDir() || int(cfg.Port) != c.Port() || cfg.User != c.User() {
		t.Errorf("%s parses to host %s port %d user %s; want %s %d %s", dsn, cfg.Host, cfg.Port, cfg.User, c.SocketDir(), c.Port(), c.User())
	}
}

// TestPgNewDatabase: two databases of one cluster are distinct, empty and
// work.
func TestPgNewDatabase(t *testing.T) {
	c := pgtest.Start(t)
	start := time.Now()
	dsn1 := c.NewDatabase(t)
	t.Logf("NewDatabase took %v: %s", time.Since(start), dsn1)
	dsn2 := c.NewDatabase(t)
	if dsn1 == dsn2 {
		t.Fatalf("NewDatabase twice gave %s", dsn1)
	}
	a, b := connect(t, dsn1), connect(t, dsn2)
	var db1, db2, who string
	if err := a.QueryRow(context.Background(), "SELECT current_database(), current_user").Scan(&db1, &who); err != nil {
		t.Fatal(err)
	}
	if err := b.QueryRow(context.Background(), "SELECT current_database()").Scan(&db2); err != nil {
		t.Fatal(err)
	}
	if db1 == db2 {
		t.Fatalf("both connections are to database %s", db1)
	}
	if who != c.User() {
		t.Errorf("connected as %s, want the cluster's user %s", who, c.User())
	}
	for _, conn := range []*pgx.Conn{a, b} {
		exec(t, conn, "CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL)")
	}
	exec(t, a, "INSERT INTO kv VALUES (1, 'one in a')")
	exec(t, b, "INSERT INTO kv VALUES (1, 'one in b'), (2, 'two in b')")
	if got := values(t, a); !equal(got, []string{"one in a"}) {
		t.Errorf("database 1 holds %q", got)
	}
	if got := values(t, b); !equal(got, []string{"one in b", "two in b"}) {
		t.Errorf("database 2 holds %q", got)
	}
}

// TestPgRestartKeepsData: committed rows are there after Restart (a fast
// shutdown, which cuts the open connection) and a new connection works.
func TestPgRestartKeepsData(t *testing.T) {
	c := pgtest.Start(t) // no test of this package runs in parallel with it: Restart cuts every connection
	dsn := c.NewDatabase(t)
	conn := connect(t, dsn)
	exec(t, conn, "CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL)")
	exec(t, conn, "INSERT INTO kv VALUES (1, 'before')")

	start := time.Now()
	c.Restart(t)
	t.Logf("Restart took %v", time.Since(start))

	if err := conn.Ping(context.Background()); err == nil {
		t.Error("a connection opened before Restart still works; the fast shutdown should have cut it")
	}
	conn2 := connect(t, dsn)
	exec(t, conn2, "INSERT INTO kv VALUES (2, 'after')")
	if got := values(t, conn2); !equal(got, []string{"before", "after"}) {
		t.Errorf("after Restart the table holds %q, want [before after]", got)
	}
}

// TestPgImmediateRestartDurable: a row committed just before an immediate
// shutdown (no checkpoint: the start recovers from the WAL, as after a
// crash) is there afterwards; one in a transaction not committed is not.
func TestPgImmediateRestartDurable(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	conn := connect(t, dsn)
	exec(t, conn, "CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL)")
	exec(t, conn, "INSERT INTO kv VALUES (1, 'committed')")
	other := connect(t, dsn)
	exec(t, other, "BEGIN")
	exec(t, other, "INSERT INTO kv VALUES (2, 'in flight')")

	start := time.Now()
	c.RestartImmediate(t)
	t.Logf("RestartImmediate took %v", time.Since(start))

	conn2 := connect(t, dsn)
	if got := values(t, conn2); !equal(got, []string{"committed"}) {
		t.Errorf("after an immediate restart the table holds %q, want [committed]", got)
	}
	var recovered bool
	log := c.LogFile()
	if b, err := os.ReadFile(log); err == nil {
		recovered = strings.Contains(string(b), "database system was interrupted") || strings.Contains(string(b), "redo starts")
	}
	if !recovered {
		t.Errorf("the server's log (%s) shows no crash recovery: was the shutdown immediate?", log)
	}
}

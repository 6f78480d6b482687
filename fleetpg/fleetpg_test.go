package fleetpg_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/fleetdb"
	"github.com/ringfence/ringfence/fleetdb/storetest"
	"github.com/ringfence/ringfence/fleetpg"
	"github.com/ringfence/ringfence/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testTimeout bounds what a test waits for the database.
const testTimeout = 30 * time.Second

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// open opens dsn and closes it when t ends.
func open(t *testing.T, dsn string, opts fleetpg.Options) *fleetpg.DB {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	db, err := fleetpg.Open(ctxFor(t), dsn, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// sql is a connection of the test's own, to look at the database and
// change it behind the store's back.
func sql(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctxFor(t), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func exec(t *testing.T, conn *pgx.Conn, q string, args ...any) {
	t.Helper()
	_, err := conn.Exec(ctxFor(t), q, args...)
	require.NoError(t, err, q)
}

func hostIDs(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(ctxFor(t), "SELECT id FROM hosts ORDER BY id")
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return ids
}

func loadedIDs(t *testing.T, db *fleetpg.DB) []string {
	t.Helper()
	st, err := db.Load()
	require.NoError(t, err)
	var ids []string
	for _, h := range st.Hosts {
		ids = append(ids, h.ID)
	}
	return ids
}

func hosts(ids ...string) controller.Changes {
	var cc controller.Changes
	for _, id := range ids {
		cc.Hosts = append(cc.Hosts, &controller.Host{ID: id, Bucket: 1, Admitted: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)})
	}
	return cc
}

// TestPGStore: PostgreSQL keeps the contract of every state store.
func TestPGStore(t *testing.T) {
	storetest.Run(t, storetest.Config{
		ErrLocked: fleetpg.ErrLocked,
		Create: func(t *testing.T) storetest.Open {
			dsn := pgtest.Start(t).NewDatabase(t)
			return func(wait time.Duration) (storetest.Store, error) {
				db, err := fleetpg.Open(ctxFor(t), dsn, fleetpg.Options{Timeout: wait})
				if err != nil {
					return nil, err
				}
				return db, nil
			}
		},
	})
}

// TestPGMigrations: the first open applies every migration once, recorded
// in schema_migrations; later opens apply nothing.
func TestPGMigrations(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	conn := sql(t, dsn)
	applied := func() (versions []int, at []time.Time) {
		rows, err := conn.Query(ctxFor(t), "SELECT version, applied_at FROM schema_migrations ORDER BY version")
		require.NoError(t, err)
		for rows.Next() {
			var v int
			var a time.Time
			require.NoError(t, rows.Scan(&v, &a))
			versions, at = append(versions, v), append(at, a)
		}
		require.NoError(t, rows.Err())
		return versions, at
	}

	db := open(t, dsn, fleetpg.Options{})
	require.NoError(t, db.Commit(hosts("h-1"), admission.Changes{}))
	require.NoError(t, db.Close())
	versions, at := applied()
	var want []int
	for v := 1; v <= fleetpg.SchemaVersion(); v++ {
		want = append(want, v)
	}
	require.Equal(t, want, versions)

	for range 2 {
		db = open(t, dsn, fleetpg.Options{})
		require.Equal(t, []string{"h-1"}, loadedIDs(t, db), "a reopen keeps the data")
		require.NoError(t, db.Close())
		again, againAt := applied()
		require.Equal(t, versions, again, "a reopen applies nothing")
		require.Equal(t, at, againAt)
	}
}

// TestPGNewerSchemaRefused: a database a newer ringfence-server migrated is
// refused, writable or read-only, and left alone.
func TestPGNewerSchemaRefused(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	require.NoError(t, open(t, dsn, fleetpg.Options{}).Close())
	conn := sql(t, dsn)
	exec(t, conn, "INSERT INTO schema_migrations (version) VALUES ($1)", fleetpg.SchemaVersion()+7)
	for _, ro := range []bool{false, true} {
		_, err := fleetpg.Open(ctxFor(t), dsn, fleetpg.Options{Timeout: time.Second, ReadOnly: ro})
		require.Error(t, err, "read-only %v", ro)
		require.Contains(t, err.Error(), fmt.Sprintf("schema version %d", fleetpg.SchemaVersion()+7))
		require.Contains(t, err.Error(), fmt.Sprintf("knows versions up to %d", fleetpg.SchemaVersion()))
	}
	var n int
	require.NoError(t, conn.QueryRow(ctxFor(t), "SELECT count(*) FROM schema_migrations").Scan(&n))
	require.Equal(t, fleetpg.SchemaVersion()+1, n)
}

// TestPGReadOnly: a read-only open needs the schema, takes no lock (it
// works beside a running server), and cannot commit.
func TestPGReadOnly(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	_, err := fleetpg.Open(ctxFor(t), dsn, fleetpg.Options{ReadOnly: true})
	require.ErrorContains(t, err, "holds no ringfence-server state")

	w := open(t, dsn, fleetpg.Options{})
	require.NoError(t, w.Commit(hosts("h-1"), admission.Changes{}))
	ro := open(t, dsn, fleetpg.Options{ReadOnly: true})
	require.Equal(t, []string{"h-1"}, loadedIDs(t, ro))
	require.ErrorIs(t, ro.Commit(hosts("h-2"), admission.Changes{}), fleetpg.ErrReadOnly)
	require.NoError(t, w.Commit(hosts("h-3"), admission.Changes{}), "the writer is not hindered")
	require.Equal(t, []string{"h-1", "h-3"}, loadedIDs(t, ro))

	exec(t, sql(t, dsn), "DELETE FROM schema_migrations")
	_, err = fleetpg.Open(ctxFor(t), dsn, fleetpg.Options{ReadOnly: true})
	require.ErrorContains(t, err, "older than this ringfence-server's")
}

// TestPGAtomicInDatabase: a statement that PostgreSQL refuses late in a
// commit's batch rolls back the statements before it.
func TestPGAtomicInDatabase(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	db := open(t, dsn, fleetpg.Options{})
	conn := sql(t, dsn)
	require.NoError(t, db.Commit(hosts("h-0"), admission.Changes{}))

	// A key with a NUL byte is not text to PostgreSQL; tokens come last.
	cc := hosts("h-1", "h-2")
	cc.Removed = []string{"h-0"}
	err := db.Commit(cc, admission.Changes{Records: []*admission.Record{{ID: "h-3"}}, Tokens: []*admission.Token{{ID: "t\x00"}}})
	require.ErrorContains(t, err, "upsert tokens")
	require.ErrorContains(t, err, "nothing stored")
	require.Equal(t, []string{"h-0"}, hostIDs(t, conn), "the host upserts and the delete before the failing statement are rolled back")
	require.Equal(t, []string{"h-0"}, loadedIDs(t, db))

	require.NoError(t, db.Commit(hosts("h-1"), admission.Changes{}), "the store still commits")
	require.Equal(t, []string{"h-0", "h-1"}, hostIDs(t, conn))
}

// TestPGWrittenBehindItsBack: a commit finds commit_seq where it left it,
// or fails (nothing stored) and so do all later ones.
func TestPGWrittenBehindItsBack(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	db := open(t, dsn, fleetpg.Options{})
	conn := sql(t, dsn)
	require.NoError(t, db.Commit(hosts("h-1"), admission.Changes{}))
	exec(t, conn, "UPDATE commit_seq SET seq = seq + 1")
	for range 2 {
		err := db.Commit(hosts("h-2"), admission.Changes{})
		require.ErrorContains(t, err, "holds a commit this server did not make")
		require.ErrorContains(t, err, "restart ringfence-server")
	}
	require.Equal(t, []string{"h-1"}, hostIDs(t, conn))
	require.NoError(t, db.Close())
	db = open(t, dsn, fleetpg.Options{})
	require.NoError(t, db.Commit(hosts("h-2"), admission.Changes{}), "a restart loads the database as it is")
}

// TestPGUndecodable: Load names the table and the key of a value that does
// not decode.
func TestPGUndecodable(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	db := open(t, dsn, fleetpg.Options{})
	exec(t, sql(t, dsn), `INSERT INTO rollouts (channel, value) VALUES (291, '{"channel": "two hundred"}')`)
	_, err := db.Load()
	require.ErrorIs(t, err, fleetpg.ErrDamaged)
	require.ErrorContains(t, err, `table rollouts, key "291"`)
}

// TestPGBackupUnsupported: Backup says to use PostgreSQL's tools.
func TestPGBackupUnsupported(t *testing.T) {
	db := open(t, pgtest.Start(t).NewDatabase(t), fleetpg.Options{})
	var buf bytes.Buffer
	n, err := db.Backup(&buf)
	require.ErrorIs(t, err, fleetpg.ErrBackupUnsupported)
	require.ErrorContains(t, err, "pg_dump")
	require.Zero(t, n)
	require.Zero(t, buf.Len())
}

// TestPGURLNotQuoted: errors never show the URL's password.
func TestPGURLNotQuoted(t *testing.T) {
	for _, dsn := range []string{
		"postgres://alice:s3cr3t@db.example:notaport/fleet",
		"postgres://alice:s3cr3t@127.0.0.1:1/fleet?sslmode=disable&connect_timeout=1",
		"postgres://alice:s3cr3t@127.0.0.1:1/fleet?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
		"postgres://alice@127.0.0.1:1/fleet?password=s3cr3t&sslmode=bogus",
	} {
		_, err := fleetpg.Open(ctxFor(t), dsn, fleetpg.Options{Timeout: time.Second})
		require.Error(t, err)
		require.NotContains(t, err.Error(), "s3cr3t")
		t.Log(err)
	}
}

// TestPGRestart: the database restarts under an open store. The commit that
// meets the broken connection fails, nothing stored; the next reconnects,
// takes the lock again and succeeds. A server that took the database over
// meanwhile is noticed, never written over.
func TestPGRestart(t *testing.T) {
	c := pgtest.NewCluster(t) // its own: a restart cuts every connection
	dsn := c.NewDatabase(t)
	conn := func() *pgx.Conn { return sql(t, dsn) }

	// A short commit timeout: a commit that waits for the lock (below)
	// gives up after it.
	db := open(t, dsn, fleetpg.Options{CommitTimeout: time.Second})
	require.NoError(t, db.Commit(hosts("h-a"), admission.Changes{}))
	c.Restart(t)
	err := db.Commit(hosts("h-b"), admission.Changes{})
	require.Error(t, err)
	require.ErrorContains(t, err, "nothing")
	require.Equal(t, []string{"h-a"}, hostIDs(t, conn()))
	require.NoError(t, db.Commit(hosts("h-c"), admission.Changes{}))
	require.Equal(t, []string{"h-a", "h-c"}, loadedIDs(t, db), "Load sees exactly what was committed")
	require.Equal(t, []string{"h-a", "h-c"}, hostIDs(t, conn()))

	// The lock went with the session: still, a second server cannot have
	// it while the first one's new session holds it.
	_, err = fleetpg.Open(ctxFor(t), dsn, fleetpg.Options{Timeout: 100 * time.Millisecond})
	require.ErrorIs(t, err, fleetpg.ErrLocked)

	// A restart between two commits lets another server in.
	c.Restart(t)
	other := open(t, dsn, fleetpg.Options{})
	require.NoError(t, other.Commit(hosts("h-other"), admission.Changes{}))
	err = db.Commit(hosts("h-d"), admission.Changes{}) // broken connection: nothing sent, or reconnect finds the lock held
	require.Error(t, err)
	err = db.Commit(hosts("h-d"), admission.Changes{})
	require.ErrorContains(t, err, "did not get its lock in time")
	require.NoError(t, other.Close())
	for range 2 {
		err = db.Commit(hosts("h-d"), admission.Changes{})
		require.ErrorContains(t, err, "written meanwhile by someone else")
	}
	require.Equal(t, []string{"h-a", "h-c", "h-other"}, hostIDs(t, conn()))
}

// TestPGLoadAfterRestart: Load reconnects, at once.
func TestPGLoadAfterRestart(t *testing.T) {
	c := pgtest.NewCluster(t)
	dsn := c.NewDatabase(t)
	db := open(t, dsn, fleetpg.Options{})
	require.NoError(t, db.Commit(hosts("h-a"), admission.Changes{}))
	c.Restart(t)
	require.Equal(t, []string{"h-a"}, loadedIDs(t, db), "Load meets the broken connection, and reads again on a new one")
}

// TestPGSchemaIsQueryable: the values are the JSON fleetdb stores, as jsonb.
func TestPGSchemaIsQueryable(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	db := open(t, dsn, fleetpg.Options{})
	r := &controller.Rollout{Spec: controller.Spec{Channel: 291, To: 1002}, State: controller.StateHalted}
	require.NoError(t, db.Commit(controller.Changes{Rollouts: []*controller.Rollout{r}}, admission.Changes{}))
	var state string
	var to int
	require.NoError(t, sql(t, dsn).QueryRow(ctxFor(t), "SELECT value->>'state', (value->>'to_version')::int FROM rollouts WHERE channel = 291").Scan(&state, &to))
	require.Equal(t, string(controller.StateHalted), state)
	require.Equal(t, 1002, to)
}

// The store satisfies what server.Store asks (server is not imported:
// fleetpg is a peer of fleetdb).
var _ interface {
	Load() (fleetdb.State, error)
	Commit(controller.Changes, admission.Changes) error
	Close() error
} = (*fleetpg.DB)(nil)

// TestPGLockVisible: the query docs/server.md gives finds the session that
// holds a server's lock (key 0x72696e6766656e63: classid and objid are its
// two halves).
func TestPGLockVisible(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	open(t, dsn, fleetpg.Options{})
	var app string
	require.NoError(t, sql(t, dsn).QueryRow(ctxFor(t), `SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
WHERE l.locktype = 'advisory' AND l.classid = 1919512167 AND l.objid = 1717923427 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&app))
	require.Equal(t, "ringfence-server", app)
}

package fleetpg

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one file of migrations/: NNNN_what.sql is version NNNN.
type migration struct {
	version int
	name    string
	sql     string
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

// migrations returns the embedded migrations in order. Their versions run
// 1, 2, 3... without gaps; anything else is a defect of the build (which
// TestMigrationFiles catches).
var migrations = sync.OnceValues(parseMigrations)

func parseMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations") // sorted by name
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("fleetpg: migrations/%s: want NNNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		if v != len(out)+1 {
			return nil, fmt.Errorf("fleetpg: migrations/%s: version %d follows %d", e.Name(), v, len(out))
		}
		b, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	if len(out) == 0 {
		return nil, errors.New("fleetpg: no migrations embedded")
	}
	return out, nil
}

// SchemaVersion is the schema this build writes: its last migration.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil {
		return 0
	}
	return len(ms)
}

const createMigrations = `CREATE TABLE schema_migrations (
	version    int PRIMARY KEY,
	applied_at timestamptz NOT NULL DEFAULT now()
)`

// migrate applies the migrations the database lacks, each in a transaction
// of its own that first takes the migration lock (pg_advisory_xact_lock),
// so that servers starting at once apply each migration once. It refuses
// a database whose schema is newer than this build's.
func migrate(ctx context.Context, conn *pgx.Conn) (applied []int, err error) {
	ms, err := migrations()
	if err != nil {
		return nil, err
	}
	for {
		done, v, err := migrateOne(ctx, conn, ms)
		if err != nil {
			return applied, err
		}
		if done {
			return applied, nil
		}
		applied = append(applied, v)
	}
}

// migrateOne applies the next migration the database lacks, if any: done
// reports that there was none.
func migrateOne(ctx context.Context, conn *pgx.Conn, ms []migration) (done bool, version int, err error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, 0, fmt.Errorf("fleetpg: migrate: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }() // after Commit it does nothing
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLockKey); err != nil {
		return false, 0, fmt.Errorf("fleetpg: migrate: take the migration lock: %w", err)
	}
	exists, err := hasMigrationsTable(ctx, tx)
	if err != nil {
		return false, 0, err
	}
	if !exists { // created only when missing: CREATE TABLE IF NOT EXISTS would need the CREATE privilege every time
		if _, err := tx.Exec(ctx, createMigrations); err != nil {
			return false, 0, fmt.Errorf("fleetpg: migrate: create schema_migrations: %w", err)
		}
	}
	cur, err := currentVersion(ctx, tx)
	if err != nil {
		return false, 0, err
	}
	if err := checkNotNewer(cur, len(ms)); err != nil {
		return false, 0, err
	}
	if cur == len(ms) {
		return true, 0, tx.Commit(ctx)
	}
	m := ms[cur]
	if _, err := tx.Exec(ctx, m.sql); err != nil {
		return false, 0, fmt.Errorf("fleetpg: migration %s failed, nothing of it was applied: %w", m.name, err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())", m.version); err != nil {
		return false, 0, fmt.Errorf("fleetpg: migration %s: record it: %w", m.name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, 0, fmt.Errorf("fleetpg: migration %s: commit: %w", m.name, err)
	}
	return false, m.version, nil
}

// querier is a pgx.Conn or a pgx.Tx.
type querier interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}

func hasMigrationsTable(ctx context.Context, q querier) (bool, error) {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return false, fmt.Errorf("fleetpg: read the schema version: %w", err)
	}
	return exists, nil
}

// currentVersion is the highest version in schema_migrations (0: none).
func currentVersion(ctx context.Context, q querier) (int, error) {
	var v int
	if err := q.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("fleetpg: read the schema version: %w", err)
	}
	return v, nil
}

func checkNotNewer(cur, known int) error {
	if cur > known {
		return fmt.Errorf("fleetpg: the database has schema version %d, and this ringfence-server knows versions up to %d: "+
			"a newer ringfence-server migrated it; run that version (or a later one), or check that --db names the right database", cur, known)
	}
	return nil
}

// checkSchema is the read-only open's check: the schema must be there,
// and exactly this build's (it writes nothing, so it cannot migrate).
func checkSchema(ctx context.Context, conn *pgx.Conn) error {
	exists, err := hasMigrationsTable(ctx, conn)
	if err != nil {
		return err
	}
	if !exists {
		return errors.New("fleetpg: the database holds no ringfence-server state (no schema_migrations table): " +
			"check that --db names the right database; 'ringfence-server serve --db' creates the tables on its first start")
	}
	cur, err := currentVersion(ctx, conn)
	if err != nil {
		return err
	}
	known := SchemaVersion()
	if err := checkNotNewer(cur, known); err != nil {
		return err
	}
	if cur < known {
		return fmt.Errorf("fleetpg: the database has schema version %d, older than this ringfence-server's %d; "+
			"a read-only look does not migrate it: start 'ringfence-server serve --db' (which migrates) once, or use the older ringfence-server", cur, known)
	}
	return nil
}

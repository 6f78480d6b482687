package fleetpg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"
)

// The connection pools (pgxpool) of the telemetry inbox (DB.Enqueue,
// Inbox, InboxLen, Standing) and of a Repo (all but Watch, which has a
// connection of its own for LISTEN). The DB's own connection, which holds
// the locks, is not pooled (see the package comment, "The lock").

// pingAgainKey, set in a context, makes Acquire ping an idle connection
// before handing it out, however briefly it was idle: a retry must not
// meet another connection the same restart broke.
type pingAgainKey struct{}

// unusedKey marks, in a connection's CustomData, one that no call has
// had yet: see withConn.
const unusedKey = "fleetpg.unused"

// newPool makes a pool of at most maxConns connections (none opened yet)
// whose connections are made with cfg, what parseConfig made of dsn. The
// pool's own configuration must come from pgxpool.ParseConfig, which
// parses dsn again; its errors, which may quote dsn, are not passed on.
func newPool(dsn string, cfg *pgx.ConnConfig, maxConns int) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("fleetpg: the database URL does not parse for a connection pool (a pool_ parameter in it?); " +
			"its form is postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?PARAMETER=VALUE&...] (libpq's connection URIs)")
	}
	// The same connections as the DB's own: the connect timeout and the
	// session parameters (pgxpool.Pool copies it for each connection).
	pc.ConnConfig = cfg
	pc.MaxConns = int32(maxConns)
	pc.MinConns, pc.MinIdleConns = 0, 0
	pc.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
		conn.PgConn().CustomData()[unusedKey] = true
		return nil
	}
	pc.ShouldPing = func(ctx context.Context, p pgxpool.ShouldPingParams) bool {
		// pgxpool's default, and a retry's wish.
		return p.IdleDuration > time.Second || ctx.Value(pingAgainKey{}) != nil
	}
	return pgxpool.NewWithConfig(context.Background(), pc)
}

// withConn runs fn on a connection of p; what names the connections in
// errors. When fn fails because the connection broke (it is closed after
// the error: the database restarted since the connection was last used)
// while ctx is live, and again(err, reused) says fn may run once more
// (reused: the connection had served an earlier call, rather than been
// made for this one), fn runs on another connection: an idle one that
// Acquire pinged first, or a new one. The broken one is dropped when
// given back (pgxpool destroys a closed connection).
func withConn(ctx context.Context, p *pgxpool.Pool, what string, fn func(*pgx.Conn) error, again func(err error, reused bool) bool) error {
	pc, err := acquire(ctx, p, what)
	if err != nil {
		return err
	}
	broken, reused, err := runOn(ctx, pc, fn)
	if !broken || !again(err, reused) {
		return err
	}
	pc, rerr := acquire(context.WithValue(ctx, pingAgainKey{}, true), p, what)
	if rerr != nil {
		return fmt.Errorf("%w (and on a new connection: %w)", err, rerr)
	}
	_, _, err = runOn(ctx, pc, fn)
	return err
}

func acquire(ctx context.Context, p *pgxpool.Pool, what string) (*pgxpool.Conn, error) {
	pc, err := p.Acquire(ctx)
	if errors.Is(err, puddle.ErrClosedPool) {
		return nil, errClosed
	}
	if err != nil {
		return nil, fmt.Errorf("fleetpg: get %s: %w", what, err)
	}
	return pc, nil
}

// runOn runs fn on pc's connection and gives it back: broken when fn
// failed on a connection that is closed after it while ctx is live.
func runOn(ctx context.Context, pc *pgxpool.Conn, fn func(*pgx.Conn) error) (broken, reused bool, err error) {
	defer pc.Release()
	conn := pc.Conn()
	data := conn.PgConn().CustomData()
	reused = data[unusedKey] == nil
	delete(data, unusedKey)
	err = fn(conn)
	return err != nil && conn.IsClosed() && ctx.Err() == nil, reused, err
}

// closePool starts closing p: its idle connections at once, the ones in
// use when they are given back; it refuses new calls (errClosed). wait
// waits for that until ctx ends at most: pgxpool's Close waits for every
// connection in use, and a call in flight (Standing is bounded by its
// caller's ctx only) must not hold Close up.
func closePool(p *pgxpool.Pool) (wait func(ctx context.Context)) {
	done := make(chan struct{})
	go func() {
		p.Close()
		close(done)
	}()
	return func(ctx context.Context) {
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
}

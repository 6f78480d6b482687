package fleetpg

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/internal/pgtest"
)

// TestMigrationFiles: the embedded migrations are numbered 1, 2, 3...
func TestMigrationFiles(t *testing.T) {
	ms, err := migrations()
	require.NoError(t, err)
	for i, m := range ms {
		require.Equal(t, i+1, m.version, m.name)
		require.NotEmpty(t, m.sql)
	}
	require.Equal(t, len(ms), SchemaVersion())
}

func TestJSONBSafe(t *testing.T) {
	for in, want := range map[string]string{
		`"a\u0000b"`:          `"a\ufffdb"`,
		`"\\u0000"`:           `"\\u0000"`, // a backslash, then the text u0000
		`"\\\u0000"`:          `"\\\ufffd"`,
		`["\u0000","\u0000"]`: `["\ufffd","\ufffd"]`,
		`"\u00000"`:           `"\ufffd0"`,
		`"\u0001"`:            `"\u0001"`,
		`"\`:                  `"\`,
		`"\u000`:              `"\u000`,
	} {
		require.Equal(t, want, string(jsonbSafe([]byte(in))), in)
	}
	raw, err := json.Marshal([]string{"a\x00b", `\u0000`})
	require.NoError(t, err)
	var back []string
	require.NoError(t, json.Unmarshal(jsonbSafe(raw), &back))
	require.Equal(t, []string{"a\uFFFDb", `\u0000`}, back)
}

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestPGMigrateConcurrently: servers starting at once on a new database
// apply each migration once (the migration lock), none failing.
func TestPGMigrateConcurrently(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	const n = 4
	var conns []*pgx.Conn
	for range n {
		conn, err := pgx.Connect(ctxFor(t), dsn)
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		conns = append(conns, conn)
	}
	errs := make(chan error, n)
	applied := make(chan []int, n)
	for _, conn := range conns {
		go func() {
			a, err := migrate(ctxFor(t), conn)
			errs <- err
			applied <- a
		}()
	}
	var all []int
	for range n {
		require.NoError(t, <-errs)
		all = append(all, <-applied...)
	}
	require.Len(t, all, SchemaVersion(), "each migration applied once: %v", all)
	var rows int
	require.NoError(t, conns[0].QueryRow(ctxFor(t), "SELECT count(*) FROM schema_migrations").Scan(&rows))
	require.Equal(t, SchemaVersion(), rows)
}

// cutProxy stands between a store and PostgreSQL (a TCP port in front of
// the cluster's unix socket) and breaks the connection on cue: after
// PostgreSQL answered a batch (it committed) but before the store hears
// it, or before the batch reaches PostgreSQL.
type cutProxy struct {
	ln     net.Listener
	socket string

	mu         sync.Mutex
	afterReady bool // cut at the next ReadyForQuery from the server, unforwarded
	beforeSend bool // cut at the next bytes from the client, unforwarded
	refuse     bool // close new connections at once
}

func newCutProxy(t *testing.T, dsn string) (*cutProxy, string) {
	t.Helper()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	q := u.Query()
	p := &cutProxy{socket: filepath.Join(q.Get("host"), ".s.PGSQL."+q.Get("port"))}
	p.ln, err = net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.ln.Close() })
	go p.serve()
	via := url.URL{Scheme: "postgres", User: u.User, Host: p.ln.Addr().String(), Path: u.Path, RawQuery: "sslmode=disable"}
	return p, via.String()
}

func (p *cutProxy) set(fn func(p *cutProxy)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fn(p)
}

// take reports and clears *flag.
func (p *cutProxy) take(flag *bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	v := *flag
	*flag = false
	return v
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.refuse
		p.mu.Unlock()
		if refuse {
			_ = c.Close()
			continue
		}
		s, err := net.Dial("unix", p.socket)
		if err != nil {
			_ = c.Close()
			continue
		}
		cut := func() { _ = c.Close(); _ = s.Close() }
		go func() { // client to server
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 && p.take(&p.beforeSend) {
					cut()
					return
				}
				if n > 0 {
					if _, werr := s.Write(buf[:n]); werr != nil {
						cut()
						return
					}
				}
				if err != nil {
					cut()
					return
				}
			}
		}()
		go func() { // server to client, message by message
			for {
				var head [5]byte
				if _, err := io.ReadFull(s, head[:]); err != nil {
					cut()
					return
				}
				body := make([]byte, int(binary.BigEndian.Uint32(head[1:]))-4)
				if _, err := io.ReadFull(s, body); err != nil {
					cut()
					return
				}
				if head[0] == 'Z' && p.take(&p.afterReady) {
					cut()
					return
				}
				if _, err := c.Write(append(head[:], body...)); err != nil {
					cut()
					return
				}
			}
		}()
	}
}

func someHosts(ids ...string) controller.Changes {
	var cc controller.Changes
	for _, id := range ids {
		cc.Hosts = append(cc.Hosts, &controller.Host{ID: id})
	}
	return cc
}

func storedHosts(t *testing.T, dsn string) []string {
	t.Helper()
	conn, err := pgx.Connect(ctxFor(t), dsn)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctxFor(t), "SELECT id FROM hosts ORDER BY id")
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return ids
}

// TestPGCommitOutcomeUnknown: the connection breaks after the batch was
// sent; Commit asks a new connection whether it took effect.
func TestPGCommitOutcomeUnknown(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	p, via := newCutProxy(t, dsn)
	db, err := Open(ctxFor(t), via, Options{Timeout: 5 * time.Second, CommitTimeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	// Every commit below is hosts and commit_seq: prepared here, so that
	// each later one is a single batch (one ReadyForQuery).
	require.NoError(t, db.Commit(someHosts("h-0"), admission.Changes{}))

	t.Run("took effect", func(t *testing.T) {
		p.set(func(p *cutProxy) { p.afterReady = true })
		require.NoError(t, db.Commit(someHosts("h-1"), admission.Changes{}), "PostgreSQL committed it: Commit finds out and says so")
		require.False(t, p.take(&p.afterReady), "the proxy cut the connection")
		require.Equal(t, []string{"h-0", "h-1"}, storedHosts(t, dsn))
		require.NoError(t, db.Commit(someHosts("h-2"), admission.Changes{}))
	})
	t.Run("did not take effect", func(t *testing.T) {
		p.set(func(p *cutProxy) { p.beforeSend = true })
		err := db.Commit(someHosts("h-3"), admission.Changes{})
		require.ErrorContains(t, err, "did not take effect")
		require.False(t, p.take(&p.beforeSend), "the proxy cut the connection")
		require.NotContains(t, storedHosts(t, dsn), "h-3")
		require.NoError(t, db.Commit(someHosts("h-4"), admission.Changes{}))
	})
	t.Run("not known, then found out", func(t *testing.T) {
		// It took effect, but the reconnect to find out fails: the commit is
		// reported as failed, and the next connection learns otherwise.
		p.set(func(p *cutProxy) { p.afterReady, p.refuse = true, true })
		err := db.Commit(someHosts("h-5"), admission.Changes{})
		require.ErrorContains(t, err, "reported as failed")
		require.Contains(t, storedHosts(t, dsn), "h-5")
		p.set(func(p *cutProxy) { p.refuse = false })
		for range 2 {
			err = db.Commit(someHosts("h-6"), admission.Changes{})
			require.ErrorContains(t, err, "took effect after all")
			require.ErrorContains(t, err, "restart ringfence-server")
		}
		require.NotContains(t, storedHosts(t, dsn), "h-6")
	})
	require.Equal(t, "127.0.0.1:"+strconv.Itoa(p.ln.Addr().(*net.TCPAddr).Port), db.Host())
}

//go:build unix

package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/filelock"
)

const (
	// parent holds the clusters' directories, prefix names them: fixed, so
	// that a later test process finds the ones a dead one left.
	parent = "/tmp"
	prefix = "ringfence-pgtest-"
	// lockName is the file whose lock says the cluster's test process is
	// alive. A directory younger than dirAge without one, or whose lock file
	// is younger than lockAge, is left alone: its process may have made it
	// and not locked it yet.
	lockName = "owner.lock"
	lockAge  = 10 * time.Second
	dirAge   = time.Minute
	// logName is the server's log (pg_ctl -l), in the cluster's directory.
	logName = "server.log"

	installHint = "'make deps' installs postgresql"
)

// binGlob is where Debian's packages put PostgreSQL's programs, a directory
// per major version (a variable for the tests).
var binGlob = "/usr/lib/postgresql/*/bin"

// Bounds on the commands, so that a wedged one fails the test with its
// output instead of hanging it. pg_ctl's own wait (-t) is shorter.
const (
	initdbTimeout = 2 * time.Minute
	pgctlWait     = 60 // seconds, pg_ctl -t
	pgctlTimeout  = 90 * time.Second
	psqlTimeout   = time.Minute
)

// Cluster is one running PostgreSQL server.
type Cluster struct {
	bin  string              // initdb, pg_ctl, postgres and psql
	dir  string              // /tmp/ringfence-pgtest-*: the socket, the log, owner.lock, data/
	data string              // the data directory
	port int                 // names the socket file, .s.PGSQL.<port>
	user string              // the superuser role, and the OS user the server runs as
	cred *syscall.Credential // who runs initdb and pg_ctl; nil: this process's user

	unlock func() // releases owner.lock; kept reachable (a collected file would drop the lock)

	mu      sync.RWMutex // held to write by Restart and Stop; to read by NewDatabase and its drop
	up      bool         // the server was started and not stopped since
	stopped bool         // Stop was called: its files are gone
}

// SocketDir is the directory of the server's unix socket (libpq's host).
func (c *Cluster) SocketDir() string { return c.dir }

// Port is the server's port number: no TCP, it names the socket file.
func (c *Cluster) Port() int { return c.port }

// User is the superuser role the connection strings use.
func (c *Cluster) User() string { return c.user }

// LogFile is the server's log.
func (c *Cluster) LogFile() string { return filepath.Join(c.dir, logName) }

// ConnString is the connection string (a URL) of database db on this
// cluster, as NewDatabase returns it.
func (c *Cluster) ConnString(db string) string {
	return fmt.Sprintf("postgres://%s@/%s?host=%s&port=%d&sslmode=disable",
		url.PathEscape(c.user), url.PathEscape(db), queryEscape(c.dir), c.port)
}

// queryEscape is url.QueryEscape leaving a path's slashes readable.
func queryEscape(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "%2F", "/") }

// shared is the test binary's cluster (Start); live every cluster not yet
// stopped, for Main and the signal handler.
var (
	shared struct {
		mu  sync.Mutex
		c   *Cluster
		err error // why it could not start: every later Start reports it without trying again
	}
	live    = map[*Cluster]bool{}
	closing bool // stopAll ran: no new clusters
	liveMu  sync.Mutex

	errStopping = errors.New("the test binary is stopping its PostgreSQL servers (a signal, or the tests are done)")

	sweepOnce sync.Once
	dbSeq     atomic.Int64
)

// Start returns the test binary's shared cluster, starting it on first use
// (initdb and start take a few seconds). Where PostgreSQL is not installed
// (no initdb/pg_ctl found in /usr/lib/postgresql/*/bin or PATH) or cannot
// start, it calls t.Skip with a message that says what is missing and that
// 'make deps' installs postgresql, or t.Fatal when EnvRequire is set.
//
// Every test of the binary shares the cluster: a test that calls Restart
// cuts the connections of every other test, so such tests should not run in
// parallel with others, or should use a NewCluster of their own.
func Start(t testing.TB) *Cluster {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c != nil && !shared.c.isStopped() {
		return shared.c
	}
	if shared.err == nil {
		shared.c, shared.err = newCluster()
	}
	if shared.err != nil {
		unavailable(t, shared.err)
	}
	return shared.c
}

// NewCluster starts a cluster of t's own, stopped and removed when t ends:
// for tests that restart the server while others use the shared one. It
// skips or fails as Start does.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := newCluster()
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return c
}

// NewDatabase creates a fresh, empty database with a unique name for this
// test and returns its connection string, a URL:
// postgres://USER@/DBNAME?host=SOCKETDIR&port=PORT&sslmode=disable . The
// database is dropped at t.Cleanup (with the connections still open to it
// cut; errors are ignored when the server is down).
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	name := dbName(t.Name(), dbSeq.Add(1))
	c.mu.RLock()
	err := c.psql("CREATE DATABASE " + name)
	c.mu.RUnlock()
	if err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		c.mu.RLock()
		defer c.mu.RUnlock()
		if !c.up {
			return
		}
		if err := c.psql("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil && c.running() {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return c.ConnString(name)
}

// Restart stops the server (fast shutdown: open connections are cut) and
// starts it again on the same data, socket and port: a database restart
// mid-test.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	c.restart(t, "fast")
}

// RestartImmediate is Restart with an immediate shutdown: the server stops
// at once, without a checkpoint, as after a crash, and the start recovers
// from the write-ahead log. What was committed must be there afterwards.
func (c *Cluster) RestartImmediate(t testing.TB) {
	t.Helper()
	c.restart(t, "immediate")
}

func (c *Cluster) restart(t testing.TB, mode string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		t.Fatal("pgtest: Restart of a stopped cluster")
	}
	if c.up {
		if err := c.pgctl("stop", "-m", mode); err != nil {
			t.Fatalf("pgtest: restart: stop (%s): %v", mode, err)
		}
		c.up = false
	}
	if err := c.start(); err != nil {
		t.Fatalf("pgtest: restart: %v", err)
	}
}

// Stop stops the server (immediate shutdown) and removes its files. A
// second Stop does nothing.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true
	liveMu.Lock()
	delete(live, c)
	liveMu.Unlock()
	var errs []error
	if c.up {
		if err := c.pgctl("stop", "-m", "immediate"); err != nil {
			errs = append(errs, fmt.Errorf("stop: %w", err))
		}
		c.up = false
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, err)
	}
	c.unlock()
	return errors.Join(errs...)
}

func (c *Cluster) isStopped() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.stopped
}

// newCluster makes a cluster with initdb and starts it. Its error says what
// is missing or went wrong, and how to get PostgreSQL.
func newCluster() (*Cluster, error) {
	liveMu.Lock()
	stopping := closing
	liveMu.Unlock()
	if stopping {
		return nil, errStopping
	}
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	sweepOnce.Do(func() { sweep(bin, time.Now()) })
	name, cred, err := runAs()
	if err != nil {
		return nil, fmt.Errorf("%v; PostgreSQL (%s) cannot run here", err, bin)
	}
	dir, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL's directory: %w", err)
	}
	unlock, err := filelock.Lock(filepath.Join(dir, lockName), 0)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c := &Cluster{
		bin:    bin,
		dir:    dir,
		data:   filepath.Join(dir, "data"),
		port:   20000 + rand.IntN(40000),
		user:   name,
		cred:   cred,
		unlock: unlock,
	}
	fail := func(err error) (*Cluster, error) {
		os.RemoveAll(dir)
		unlock()
		return nil, fmt.Errorf("PostgreSQL (%s) could not start here, as user %s: %w", bin, name, err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fail(fmt.Errorf("give %s to %s: %w", dir, name, err))
		}
	}
	// --no-sync: initdb's own files are not flushed (a power cut is not
	// what these tests make); the server's durability settings stay the
	// defaults. TZ=UTC (env) spares initdb its search for the zone.
	ctx, cancel := context.WithTimeout(context.Background(), initdbTimeout)
	defer cancel()
	cmd := c.command(ctx, "initdb", "-D", c.data, "-U", name, "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %v\n%s", err, out))
	}
	conf := fmt.Sprintf("\n# internal/pgtest: a unix socket in %s only, small.\n"+
		"listen_addresses = ''\nunix_socket_directories = '%s'\nport = %d\n"+
		"shared_buffers = 32MB\nmax_connections = 100\n",
		c.dir, strings.ReplaceAll(c.dir, "'", "''"), c.port)
	f, err := os.OpenFile(filepath.Join(c.data, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		_, err = f.WriteString(conf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fail(err)
	}
	liveMu.Lock()
	if closing {
		liveMu.Unlock()
		return fail(errStopping)
	}
	live[c] = true
	liveMu.Unlock()
	c.mu.Lock()
	err = c.start()
	c.mu.Unlock()
	if err != nil {
		liveMu.Lock()
		delete(live, c)
		liveMu.Unlock()
		_ = c.pgctl("stop", "-m", "immediate") // should pg_ctl have given up on a server that runs
		return fail(err)
	}
	return c, nil
}

// start starts the server and waits until it accepts connections (pg_ctl
// -w). c.mu is held.
func (c *Cluster) start() error {
	if err := c.pgctl("start", "-l", c.LogFile()); err != nil {
		return err
	}
	c.up = true
	return nil
}

// pgctl runs pg_ctl ACTION -D data -w with args, as the cluster's user. Its
// error holds pg_ctl's output and the tail of the server's log.
func (c *Cluster) pgctl(action string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), pgctlTimeout)
	defer cancel()
	args = append([]string{action, "-D", c.data, "-w", "-t", strconv.Itoa(pgctlWait), "-s"}, args...)
	out, err := c.command(ctx, "pg_ctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %v\n%s%s", strings.Join(args, " "), err, out, c.logTail())
	}
	return nil
}

// running reports whether pg_ctl status finds the server running.
func (c *Cluster) running() bool {
	ctx, cancel := context.WithTimeout(context.Background(), pgctlTimeout)
	defer cancel()
	return c.command(ctx, "pg_ctl", "status", "-D", c.data).Run() == nil
}

// psql runs one SQL command in database postgres, as this process's user
// connecting as the superuser.
func (c *Cluster) psql(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), psqlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
		"-h", c.dir, "-p", strconv.Itoa(c.port), "-U", c.user, "-d", "postgres", "-c", sql)
	cmd.Env = env()
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("psql -c %q: %v\n%s%s", sql, err, out, c.logTail())
	}
	return nil
}

// command is bin/name with args, run as the cluster's user in its directory.
func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return serverCommand(ctx, c.bin, c.dir, c.cred, name, args...)
}

func serverCommand(ctx context.Context, bin, dir string, cred *syscall.Credential, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
	cmd.Dir = dir
	cmd.Env = env()
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Env = append(cmd.Env, "HOME="+dir)
	}
	// pg_ctl start gives the server the log file, not our pipes; should
	// anything keep them open, Wait gives up on them after this.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// env is this process's environment without what would point PostgreSQL's
// programs elsewhere (PG*: another server, user or service file) or change
// their language, plus LC_ALL=C and TZ=UTC.
func env() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "LC_") || k == "LANG" || k == "LANGUAGE" || k == "TZ" || k == "HOME" {
			continue
		}
		out = append(out, kv)
	}
	if home, err := os.UserHomeDir(); err == nil {
		out = append(out, "HOME="+home)
	}
	return append(out, "LC_ALL=C", "TZ=UTC")
}

// logTail is the end of the server's log, to append to an error.
func (c *Cluster) logTail() string {
	b, err := os.ReadFile(c.LogFile())
	if err != nil || len(b) == 0 {
		return ""
	}
	const tail = 4096
	if len(b) > tail {
		b = b[len(b)-tail:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return fmt.Sprintf("--- the end of the server's log, %s:\n%s", c.LogFile(), b)
}

// dbName is a database name for test and seq: letters, digits and _, at
// most 63 bytes (PostgreSQL's limit), unique in the process by seq.
func dbName(test string, seq int64) string {
	var b strings.Builder
	for _, r := range strings.ToLower(test) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	name := b.String()
	if len(name) > 40 {
		name = name[:40]
	}
	return fmt.Sprintf("t%d_%s", seq, name)
}

// findBin returns the directory holding initdb, pg_ctl, postgres and psql:
// the newest /usr/lib/postgresql/*/bin (Debian's layout), else where PATH
// finds initdb.
func findBin() (string, error) {
	need := []string{"initdb", "pg_ctl", "postgres", "psql"}
	missing := func(dir string) []string {
		var m []string
		for _, n := range need {
			if fi, err := os.Stat(filepath.Join(dir, n)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				m = append(m, n)
			}
		}
		return m
	}
	dirs, _ := filepath.Glob(binGlob)
	slices.SortFunc(dirs, func(a, b string) int { return -compareVersions(versionOf(a), versionOf(b)) })
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
		if r, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append(dirs, filepath.Dir(r))
		}
	}
	var partial []string
	for _, d := range dirs {
		m := missing(d)
		if len(m) == 0 {
			return d, nil
		}
		if len(m) < len(need) {
			partial = append(partial, fmt.Sprintf("%s lacks %s", d, strings.Join(m, ", ")))
		}
	}
	if len(partial) > 0 {
		return "", fmt.Errorf("PostgreSQL is not fully installed here (%s); %s (and postgresql-client for psql)", strings.Join(partial, "; "), installHint)
	}
	return "", fmt.Errorf("PostgreSQL is not installed here (no initdb or pg_ctl in /usr/lib/postgresql/*/bin or on PATH); %s", installHint)
}

// versionOf is the version directory of /usr/lib/postgresql/VERSION/bin.
func versionOf(bin string) string { return filepath.Base(filepath.Dir(bin)) }

// compareVersions orders "9.6" < "15" < "16".
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, _ := strconv.Atoi(as[i])
		y, _ := strconv.Atoi(bs[i])
		if x != y {
			return x - y
		}
	}
	return len(as) - len(bs)
}

// runAs returns the OS user to run initdb and pg_ctl as, the superuser role
// name, and the credential to switch to (nil: stay this process's user).
// PostgreSQL refuses root: as root, postgres, else nobody.
func runAs() (string, *syscall.Credential, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return "", nil, fmt.Errorf("this user (uid %d) has no name (initdb needs one: add it to /etc/passwd): %v", os.Geteuid(), err)
		}
		return u.Username, nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return name, &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
	}
	return "", nil, errors.New("running as root, which PostgreSQL refuses, and there is no postgres or nobody user to run it as (Debian's postgresql package creates postgres)")
}

// sweep stops and removes the clusters under parent whose test process has
// ended: those whose owner.lock it can take (see the package comment).
func sweep(bin string, now time.Time) {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		dir := filepath.Join(parent, e.Name())
		lock := filepath.Join(dir, lockName)
		if fi, err := os.Stat(lock); err == nil {
			if now.Sub(fi.ModTime()) < lockAge {
				continue
			}
		} else if fi, err := os.Stat(dir); err != nil || now.Sub(fi.ModTime()) < dirAge {
			continue
		}
		unlock, err := filelock.Lock(lock, 0)
		if err != nil {
			continue // its process lives, or the directory is not ours to clean
		}
		if stopStale(bin, dir) {
			os.RemoveAll(dir)
		}
		unlock()
	}
}

// stopStale stops the server of a stale cluster's directory, if one runs,
// as the data directory's owner, and reports whether none runs now.
func stopStale(bin, dir string) bool {
	data := filepath.Join(dir, "data")
	pidFile, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return true // never started, or stopped
	}
	first, _, _ := strings.Cut(string(pidFile), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return true
	}
	alive := func() bool {
		err := syscall.Kill(pid, 0)
		return err == nil || errors.Is(err, syscall.EPERM)
	}
	if !alive() {
		return true
	}
	fi, err := os.Stat(data)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	var cred *syscall.Credential
	switch {
	case os.Geteuid() == 0 && st.Uid != 0:
		cred = &syscall.Credential{Uid: st.Uid, Gid: st.Gid, Groups: []uint32{}}
	case uint32(os.Geteuid()) != st.Uid:
		return false // another user's: not ours to stop
	}
	ctx, cancel := context.WithTimeout(context.Background(), pgctlTimeout)
	defer cancel()
	if serverCommand(ctx, bin, dir, cred, "pg_ctl", "stop", "-D", data, "-m", "immediate", "-w", "-t", strconv.Itoa(pgctlWait), "-s").Run() == nil {
		return true // stopped (a zombie until its parent, init, reaps it: kill -0 would still find it)
	}
	return !alive()
}

// stopAll stops every cluster not yet stopped (Main, the signal handler),
// and makes every later Start and NewCluster fail: the process is ending.
func stopAll() error {
	liveMu.Lock()
	closing = true
	cs := make([]*Cluster, 0, len(live))
	for c := range live {
		cs = append(cs, c)
	}
	liveMu.Unlock()
	var errs []error
	for _, c := range cs {
		if err := c.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stopOnSignal stops the clusters on SIGINT and SIGTERM, then lets the
// signal end the process as it would have. A signal the process was started
// ignoring (a background job of a script: SIGINT) stays ignored.
func stopOnSignal() {
	var sigs []os.Signal
	for _, s := range []os.Signal{syscall.SIGINT, syscall.SIGTERM} {
		if !signal.Ignored(s) {
			sigs = append(sigs, s)
		}
	}
	if len(sigs) == 0 {
		return
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	go func() {
		sig := (<-ch).(syscall.Signal)
		if err := stopAll(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v: stopping the test PostgreSQL server: %v\n", sig, err)
		}
		signal.Reset(sig)
		_ = syscall.Kill(os.Getpid(), sig)
		os.Exit(128 + int(sig)) // should the signal not end it first
	}()
}

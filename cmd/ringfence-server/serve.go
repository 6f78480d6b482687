package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/fleetpg"
	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/cli"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/server/pgreplica"
)

const serveHelp = `
Serve runs the rollout server on one address:
  /metadata/, /targets/   the TUF repository as static files (ETag and
                          If-None-Match: an idle host's check is one 304)
  POST /v1/telemetry      signed host batches (docs/telemetry.md)
  /v1/rollouts            the rollouts as JSON; POST actions need the
                          operator token (Authorization: Bearer TOKEN)
  /v1/hosts, /v1/enrolment-tokens
                          the fleet's admission (operator token)
  /metrics                Prometheus text format
  /                       the dashboard (open the URL printed at start:
                          it carries the token in its #fragment)

The rollout controller evaluates every --eval-interval: a stage advances when
its bake time passed, enough of its hosts reported healthy and the gate does
not reject; a rejection (or any revert in the canary group) halts and rolls
back by itself: every host is sent back to the version the rollout started
from, and the bad version is denied (docs/gate.md). The rollout role, snapshot
and timestamp keys must be in --keys (online keys); the root and content keys
need not be. State (hosts, rollouts, decisions, tokens) lives in
--state/server.db, or, with --db postgres://USER@HOST/DATABASE, in that
PostgreSQL database (--state still holds the operator token and serve.url;
docs/server.md, "State"); a restart resumes every rollout where it was.
Timestamp and snapshot are re-signed every 6 hours.

With --db, serve is a replica: run any number on one database, behind a load
balancer (docs/scale.md). Every replica serves the repository (the same
bytes, kept in the database and pulled into --repo), queues telemetry in the
database and answers the API (passing it to the leader, at its --advertise
URL). One replica leads, by a lease in the database (--lease-ttl): it alone
applies the telemetry, evaluates the gates, decides and signs, and each of its
writes is fenced by the lease. Give every replica the same --keys and the
same operator.token in its --state.

What a host reports counts only once the fleet admitted it: by an enrolment
token ('tokens create') or an operator ('hosts accept'). Other keys wait as
pending (at most --max-pending, forgotten after --pending-ttl) and count for
nothing (docs/server.md, "Admitting hosts").

With --prometheus URL, a rollout may carry SLO checks ('rollout start --slo'):
PromQL queries with bounds that the leader runs against that Prometheus at
each evaluation; a value out of bounds, or no data for longer than a check's
grace, halts the rollout as the gate does (docs/slo.md).

With --tls-cert and --tls-key it serves HTTPS only; hosts pin its CA with
ca_file, operator commands with --ca-file. --max-conns and --read-timeout
keep slow clients from taking every descriptor (docs/server.md, "TLS and
limits").`

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("serve", "serve --repo DIR --keys KEYDIR --state DIR [--db postgres://...] [--addr HOST:PORT]", serveHelp, stdout, stderr)
	repo, keys := repoFlags(fs)
	state := fs.String("state", "", "state directory (server.db, operator.token, serve.url)")
	dbURL := fs.String("db", "", dbFlagHelp)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address (port 0 picks a free one)")
	eval := fs.Duration("eval-interval", server.DefaultEvalInterval, "how often the gates are evaluated")
	canaryHosts := fs.String("canary-hosts", "", "comma-separated host ids: the canary group of rollouts started without their own")
	canaryTags := fs.String("canary-tags", "canary", "comma-separated tags: admitted hosts the server gave one (by token or 'hosts tag') are the canary group")
	rateLimit := fs.Float64("host-rate", server.DefaultBatchesPerHost, "telemetry batches per second allowed per host (sustained)")
	maxHosts := fs.Int("max-hosts", server.DefaultMaxHosts, "hosts in the fleet (admitted); one admitted beyond it waits as pending")
	maxPending := fs.Int("max-pending", admission.DefaultMaxPending, "keys waiting for admission, kept apart from the fleet; a new one beyond it is refused until some are decided or pruned")
	pendingTTL := fs.Duration("pending-ttl", admission.DefaultPendingTTL, "a pending key unheard for this long is forgotten")
	startEmpty := fs.Bool("start-empty", false, "if server.db is damaged (not with --db), move it aside and start with an empty state (every rollout, deny list, host and token is gone; restore a backup instead if you have one)")
	logJSON := fs.Bool("log-json", false, "log as JSON lines")
	tlsCert := fs.String("tls-cert", "", "serve HTTPS with this certificate chain (PEM; with --tls-key)")
	tlsKey := fs.String("tls-key", "", "the private key of --tls-cert (PEM)")
	maxConns := fs.Int("max-conns", defaultMaxConns(), "connections open at once; more wait in the accept queue (the default is 3/4 of the open-file limit, within 64..10000)")
	readTimeout := fs.Duration("read-timeout", 15*time.Second, "time a client gets to send a whole request, body included")
	advertise := fs.String("advertise", "", "with --db: the URL the other replicas reach this one at (the API is passed to the leader there); default: the listen address's URL")
	leaseTTL := fs.Duration("lease-ttl", server.DefaultLeaseTTL, "with --db: how long the leader's lease lasts unless renewed (every second); a leader that died is replaced after about this long")
	prometheus := fs.String("prometheus", "", "the Prometheus server (http://HOST:9090) whose API answers the rollouts' SLO checks; the leader queries it at each evaluation; without it a rollout with SLO checks is refused (docs/slo.md)")
	if _, code, ok := cli.ParseArgs(fs, args, stdout); !ok {
		return code
	}
	if !need(stderr, "serve", map[string]string{"repo": *repo, "keys": *keys, "state": *state}) {
		return cli.ExitUsage
	}
	if *readTimeout <= 0 {
		return fail(stderr, "serve", fmt.Errorf("--read-timeout %v: want a positive duration such as 15s", *readTimeout))
	}
	if *maxConns < 1 {
		return fail(stderr, "serve", fmt.Errorf("--max-conns %d: want at least 1", *maxConns))
	}
	tlsConf, err := serverTLS(*tlsCert, *tlsKey)
	if err != nil {
		return fail(stderr, "serve", err)
	}
	var h slog.Handler = slog.NewTextHandler(stderr, nil)
	if *logJSON {
		h = slog.NewJSONHandler(stderr, nil)
	}
	log := slog.New(h)
	if err := checkDB(*dbURL); err != nil {
		return fail(stderr, "serve", err)
	}
	if *dbURL != "" && *startEmpty {
		return fail(stderr, "serve", errors.New("--start-empty answers a damaged server.db; with --db the state is in PostgreSQL: restore the database from its backup instead"))
	}
	if *leaseTTL < 2*server.DefaultLeaseCheck {
		return fail(stderr, "serve", fmt.Errorf("--lease-ttl %v: want at least %v (the lease is renewed every %v)", *leaseTTL, 2*server.DefaultLeaseCheck, server.DefaultLeaseCheck))
	}
	var rep *pgreplica.Replica
	if *dbURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), dbOpenTimeout)
		r, err := pgreplica.Open(ctx, *dbURL, *leaseTTL)
		cancel()
		if err != nil {
			return fail(stderr, "serve", err)
		}
		log.Info("state in PostgreSQL: a replica (one of any number on this database; one leads)", "host", r.DB().Host(), "database", r.DB().Database())
		rep = r
	}
	opts := server.Options{Repo: *repo, Keys: *keys, State: *state, Log: log, EvalInterval: *eval,
		CanaryHosts: splitList(*canaryHosts), CanaryTags: splitList(*canaryTags), BatchesPerHost: *rateLimit, MaxHosts: *maxHosts,
		MaxPending: *maxPending, PendingTTL: *pendingTTL, StartEmpty: *startEmpty, Prometheus: *prometheus}
	if rep != nil {
		opts.Replication = rep
	}
	srv, err := server.New(opts)
	if err != nil {
		if rep != nil {
			rep.Close() // New closes the store it was given only when it got as far as loading it
		}
		return fail(stderr, "serve", err)
	}
	defer srv.Close()
	ln, err := listen(*addr, *maxConns)
	if err != nil {
		return fail(stderr, "serve", err)
	}
	scheme := "http"
	if tlsConf != nil {
		scheme = "https"
	}
	url := scheme + "://" + ln.Addr().String()
	if rep != nil {
		name := url
		if *advertise != "" {
			name = *advertise
		}
		rep.SetName(name)
	}
	urlFile := filepath.Join(*state, server.AddrFile)
	if err := atomicfile.WriteFile(urlFile, []byte(url+"\n"), 0o600); err != nil {
		return fail(stderr, "serve", err)
	}
	defer os.Remove(urlFile)
	fmt.Fprintf(stdout, "serving %s on %s\n", *repo, url)
	fmt.Fprintf(stdout, "dashboard: %s/#token=%s\n", url, srv.Token())
	fmt.Fprintf(stdout, "hosts: repository %s, telemetry endpoint %s\n", url, url)
	if *prometheus != "" {
		log.Info("SLO checks: the leader queries Prometheus at each evaluation", "prometheus", redactURL(*prometheus))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hs := httpServer(srv.Handler(), *readTimeout, tlsConf)
	hs.ErrorLog = slog.NewLogLogger(h, slog.LevelWarn) // failed handshakes and the like, in the log's format
	errc := make(chan error, 1)
	go func() {
		if tlsConf != nil {
			errc <- hs.ServeTLS(ln, "", "") // the certificate is in hs.TLSConfig
			return
		}
		errc <- hs.Serve(ln)
	}()
	go func() { _ = srv.Run(ctx, nil) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fail(stderr, "serve", err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	log.Info("stopped")
	return cli.ExitOK
}

// dbFlagHelp is serve's --db.
const dbFlagHelp = "where the state lives: empty (the default) keeps it in STATE/server.db; a postgres:// or postgresql:// URL " +
	"(postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=...]) keeps it in that PostgreSQL database, and --state then holds " +
	"the operator token and serve.url only; a password may come from PGPASSWORD or ~/.pgpass instead of the URL"

// checkDB checks --db's form: empty, or a PostgreSQL URL. The error never
// quotes it (it may hold a password).
func checkDB(u string) error {
	if u == "" {
		return nil
	}
	scheme, _, ok := strings.Cut(u, "://")
	if ok && (strings.EqualFold(scheme, "postgres") || strings.EqualFold(scheme, "postgresql")) {
		return nil
	}
	return errors.New("--db takes a postgres:// or postgresql:// URL (the state in that PostgreSQL database), " +
		"or nothing (the state in STATE/server.db)")
}

// dbOpenTimeout bounds opening --db: the connection, the lock, the
// migrations.
const dbOpenTimeout = time.Minute

// dbLockWait is how long opening --db waits for another server to let go
// of the database: longer than server.db's second, as PostgreSQL releases
// a stopped server's lock once it has ended its session, which takes a
// moment after the process is gone.
const dbLockWait = 5 * time.Second

// openDB opens the PostgreSQL database of --db (checked by checkDB), read
// only to look.
func openDB(u string, readOnly bool) (*fleetpg.DB, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dbOpenTimeout)
	defer cancel()
	return fleetpg.Open(ctx, u, fleetpg.Options{Timeout: dbLockWait, ReadOnly: readOnly})
}

// redactURL is a URL for the log, without its password.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// target is where an operator command acts: a running server's API, or the
// state directory itself when no server holds it.
type target struct {
	ops   operations
	close func()
}

// untrusted reports whether err is a server certificate that the
// operator command does not trust.
func untrusted(err error) bool {
	var cv *tls.CertificateVerificationError
	return errors.As(err, &cv)
}

// tlsHint says what to do about an untrusted server certificate.
func tlsHint(err error) error {
	if untrusted(err) {
		return fmt.Errorf("%w; give --ca-file with the server's CA certificate", err)
	}
	return err
}

// targetFlags adds the flags that say where an operator command acts.
func targetFlags(fs *flag.FlagSet) func(stderr io.Writer, cmd string) (*target, bool) {
	where := addServerFlags(fs, "the server's state directory: talks to the server running on it, or, when none runs, acts on it directly (then --repo and --keys sign the plan)")
	repo, keys := repoFlags(fs)
	dbURL := fs.String("db", "", "the --db of 'serve': when no server runs on --state, act on that PostgreSQL database "+
		"(a postgres:// or postgresql:// URL) instead of STATE/server.db")
	return func(stderr io.Writer, cmd string) (*target, bool) {
		if err := checkDB(*dbURL); err != nil {
			fmt.Fprintf(stderr, "ringfence-server %s: %v\n", cmd, err)
			return nil, false
		}
		c, running, err := where.client()
		if err != nil {
			fmt.Fprintf(stderr, "ringfence-server %s: %v\n", cmd, err)
			return nil, false
		}
		if running {
			return &target{ops: remote{c}, close: func() {}}, true
		}
		state := *where.state
		// Looking needs no keys; acting does.
		readOnly := slices.Contains([]string{"rollout status", "hosts list", "hosts show", "tokens list"}, cmd) && (*repo == "" || *keys == "")
		if !readOnly && (*repo == "" || *keys == "") {
			fmt.Fprintf(stderr, "ringfence-server %s: no server is running on %s; start one ('ringfence-server serve'), or give --repo and --keys to act on the state directory directly\n", cmd, state)
			return nil, false
		}
		var store server.Store
		if *dbURL != "" {
			db, err := openDB(*dbURL, readOnly)
			if err != nil {
				fmt.Fprintf(stderr, "ringfence-server %s: %v\n", cmd, err)
				return nil, false
			}
			store = db
		}
		s, err := server.New(server.Options{Repo: *repo, Keys: *keys, State: state, ReadOnly: readOnly, Store: store})
		if err != nil {
			if store != nil {
				store.Close()
			}
			fmt.Fprintf(stderr, "ringfence-server %s: %v\n", cmd, err)
			return nil, false
		}
		return &target{ops: local{s}, close: func() { s.Close() }}, true
	}
}

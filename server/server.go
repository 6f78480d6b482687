// Package server is ringfence-server serve: one HTTP server on which the
// TUF repository is served as static files (ETags, so an idle host's check
// is one small conditional request), hosts post signed telemetry batches,
// operators drive rollouts and admit hosts through a JSON API, Prometheus
// scrapes /metrics and people watch the dashboard. Behind it the rollout
// controller decides and the rollout role signs the plan each decision
// implies.
//
// Order of effects for every change (a telemetry batch, a gate decision,
// an operator's action, an admission), under one lock (commit.go):
//  1. the controller and the admission registry decide, tentatively;
//  2. the store commits what they changed, with fsync; a failed commit
//     undoes it in memory, so nothing the API shows or the gate acts on is
//     not on disk, and the change is retried (the host resends, the gate
//     decides again, the operator repeats);
//  3. only then is a batch acknowledged, and the plans that changed are
//     signed into the repository (rollout role, then snapshot and
//     timestamp); a signature that fails is retried by Run until it
//     succeeds, and the API says the plan is not yet signed.
//
// A crash between 2 and 3 leaves a decision recorded but not yet signed:
// New re-signs every plan that differs from its rollout's state, so a
// restart finishes the job (assume the last run crashed).
package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/dashboard"
	"github.com/ringfence/ringfence/fleetdb"
	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/slo"
	"github.com/ringfence/ringfence/tufrepo"
)

// Files the server keeps in its state directory beside server.db.
const (
	// TokenFile holds the operator token (hex, 0600): the bearer token the
	// API's actions and the dashboard's buttons need.
	TokenFile = "operator.token"
	// AddrFile holds the URL of the running server, so commands given
	// --state find it.
	AddrFile = "serve.url"
)

// Defaults of Options.
const (
	DefaultEvalInterval    = 5 * time.Second
	DefaultRefreshInterval = 6 * time.Hour
	DefaultBatchesPerHost  = 1.0 // per second, sustained
	DefaultBatchBurst      = 30
	// DefaultMaxHosts bounds the hosts the server keeps (host ids are
	// self-certifying keys, so anyone can make new ones): about 300 bytes
	// of memory and of server.db each.
	DefaultMaxHosts = 5_000_000
)

// Options configure a Server.
type Options struct {
	Repo, Keys, State string
	// Clock is the server's time: decisions, bakes, tokens, signatures'
	// expiry and backups' names; nil means clock.System.
	Clock clock.Clock
	Log   *slog.Logger
	// CanaryHosts and CanaryTags make the canary group of rollouts started
	// without their own stages.
	CanaryHosts, CanaryTags []string
	// EvalInterval is how often Run evaluates the gates; RefreshInterval
	// how often it re-signs timestamp and snapshot.
	EvalInterval, RefreshInterval time.Duration
	// BatchesPerHost and BatchBurst rate-limit each host's telemetry.
	BatchesPerHost float64
	BatchBurst     int
	// MaxHosts bounds the hosts in the fleet (admitted); a host that
	// would be admitted beyond it waits as pending until hosts are
	// decommissioned or the bound raised.
	MaxHosts int
	// MaxPending bounds the keys waiting for admission, apart from the
	// fleet; PendingTTL prunes one unheard for that long.
	MaxPending int
	PendingTTL time.Duration
	// StartEmpty answers a damaged server.db by moving it aside and
	// starting empty (loudly) instead of refusing to start.
	StartEmpty bool
	// Store replaces the state directory's server.db (tests inject one
	// whose commits fail).
	Store Store
	// Replication makes the server a replica of several on one database
	// (replica.go): it replaces Store. LeaseCheck (DefaultLeaseCheck) is
	// how often it renews or tries to take the leader lease; InboxInterval
	// (DefaultInboxInterval) how often the leader applies the telemetry
	// the replicas queued.
	Replication   Replication
	LeaseCheck    time.Duration
	InboxInterval time.Duration
	// ReadOnly opens the state to look at it (rollout status without a
	// running server): no repository or keys needed, nothing is signed,
	// and Start and Act refuse.
	ReadOnly bool
	// Prometheus is the URL of the Prometheus server whose HTTP API
	// answers the rollouts' SLO checks (slo.go, docs/slo.md); "": none,
	// and a rollout with checks is refused at its start.
	Prometheus string
}

// Server is a running ringfence-server.
type Server struct {
	opts  Options
	clock clock.Clock
	log   *slog.Logger
	token string

	mu       sync.Mutex // guards ctl, reg, health, unsigned, the repository's writes and store writes
	ctl      *controller.Controller
	reg      *admission.Registry
	store    Store
	health   storeHealth
	unsigned map[uint32]unsigned

	// A replica's (replica.go): whether it leads, until when; mustLoad,
	// set when the state must be loaded before it leads again;
	// repoVersion, the shared repository's version in the local directory
	// (-1: unknown, pull again); consumed, the inbox rows the change in
	// progress applies. counted: the batches whose events the metrics
	// count once the change in progress is committed.
	leading       bool
	leaseDeadline time.Time
	mustLoad      bool
	repoVersion   int64
	consumed      []int64
	counted       []countBatch

	static  *staticRepo
	limits  *limiter
	metrics *metrics
	mux     *http.ServeMux

	// prom and slo run the rollouts' SLO checks (slo.go); nil without
	// Options.Prometheus. slo keeps its own lock: its queries run without
	// s.mu.
	prom *slo.Client
	slo  *slo.Evaluator
}

// New opens the repository, the keys and the state, loads every rollout
// and re-signs any plan that lags its rollout's state.
func New(opts Options) (*Server, error) {
	if opts.Clock == nil {
		opts.Clock = clock.System{}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.EvalInterval <= 0 {
		opts.EvalInterval = DefaultEvalInterval
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = DefaultRefreshInterval
	}
	if opts.BatchesPerHost <= 0 {
		opts.BatchesPerHost = DefaultBatchesPerHost
	}
	if opts.BatchBurst <= 0 {
		opts.BatchBurst = DefaultBatchBurst
	}
	if opts.MaxHosts <= 0 {
		opts.MaxHosts = DefaultMaxHosts
	}
	if opts.LeaseCheck <= 0 {
		opts.LeaseCheck = DefaultLeaseCheck
	}
	if opts.InboxInterval <= 0 {
		opts.InboxInterval = DefaultInboxInterval
	}
	if opts.Replication != nil {
		if opts.ReadOnly {
			return nil, errors.New("server: a replica cannot be opened read-only")
		}
		opts.Store = opts.Replication
		if err := seedRepo(opts.Replication, opts.Repo); err != nil {
			return nil, err
		}
	}
	if !opts.ReadOnly {
		// Checked once here, so that a wrong --repo fails at start-up; every
		// use opens it afresh (a publisher may change it meanwhile).
		if _, err := tufrepo.Open(opts.Repo, opts.Keys, opts.Clock); err != nil {
			return nil, fmt.Errorf("server: %w (is --repo a repository made by 'ringfence-server repo init'?)", err)
		}
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = admission.DefaultMaxPending
	}
	if opts.PendingTTL <= 0 {
		opts.PendingTTL = admission.DefaultPendingTTL
	}
	if err := checkStateDir(opts.State); err != nil {
		return nil, err
	}
	var prom *slo.Client
	if opts.Prometheus != "" && !opts.ReadOnly {
		c, err := slo.NewClient(opts.Prometheus, nil)
		if err != nil {
			return nil, fmt.Errorf("server: --prometheus: %w", err)
		}
		prom = c
	}
	// Looking creates nothing: a mistyped state directory is an error, not
	// a new empty fleet.
	var token string
	if !opts.ReadOnly {
		t, err := LoadOrCreateToken(opts.State)
		if err != nil {
			return nil, err
		}
		token = t
	}
	store := opts.Store
	if store == nil {
		db, err := fleetdb.Open(opts.State, fleetdb.Options{Timeout: time.Second, ReadOnly: opts.ReadOnly, StartEmpty: opts.StartEmpty && !opts.ReadOnly, Clock: opts.Clock})
		if err != nil {
			return nil, err
		}
		if p := db.Recovered(); p != "" {
			opts.Log.Error("server.db was damaged: moved aside, STARTED EMPTY; every rollout, deny list, host and token is gone; check the signed rollout plans and re-admit the fleet before starting a rollout", "moved_to", p)
		}
		store = db
	}
	var st fleetdb.State
	if opts.Replication == nil {
		// A replica loads the state when it comes to lead (takeOver), as
		// it is then: until then it holds none.
		var err error
		if st, err = store.Load(); err != nil {
			store.Close()
			return nil, err
		}
	}
	ctl := controller.New(st.Hosts, st.Rollouts)
	ctl.CanaryHosts, ctl.CanaryTags = opts.CanaryHosts, opts.CanaryTags
	reg := admission.New(st.Records, st.Tokens)
	reg.MaxPending, reg.PendingTTL = opts.MaxPending, opts.PendingTTL
	s := &Server{opts: opts, clock: opts.Clock, log: opts.Log, token: token, ctl: ctl, reg: reg, store: store,
		unsigned: map[uint32]unsigned{},
		static:   newStaticRepo(opts.Repo),
		limits:   newLimiter(opts.BatchesPerHost, opts.BatchBurst),
		metrics:  newMetrics(), prom: prom}
	if prom != nil {
		s.slo = slo.NewEvaluator(prom, opts.Clock)
	}
	if !opts.ReadOnly && opts.Replication == nil {
		// Plans that lag their rollout (on a replica: once it leads,
		// takeOver) (a crash after a commit, a signature
		// that kept failing) are signed now, or retried by Run.
		s.mu.Lock()
		for _, r := range ctl.Rollouts() {
			s.sign(r.Channel)
		}
		s.warnUnwatched()
		s.mu.Unlock()
	}
	if opts.Replication == nil && !opts.ReadOnly {
		s.metrics.leader.Set(1) // alone, it leads
	}
	s.static.checkins = func() { s.metrics.checkins.Add(1) }
	s.routes()
	return s, nil
}

// Close closes the state.
func (s *Server) Close() error { return s.store.Close() }

// Token is the operator token.
func (s *Server) Token() string { return s.token }

// Handler is the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

func (s *Server) routes() {
	m := http.NewServeMux()
	m.Handle("GET /metadata/", s.static)
	m.Handle("HEAD /metadata/", s.static)
	m.Handle("GET /targets/", s.static)
	m.Handle("HEAD /targets/", s.static)
	m.HandleFunc("POST /v1/telemetry", s.handleTelemetry)
	m.HandleFunc("GET /v1/rollouts", s.leaderOnly(s.handleRollouts))
	m.HandleFunc("GET /v1/rollouts/{channel}", s.leaderOnly(s.handleRollout))
	m.HandleFunc("POST /v1/rollouts", s.leaderOnly(s.auth(s.handleStart)))
	m.HandleFunc("POST /v1/rollouts/{channel}/{action}", s.leaderOnly(s.auth(s.handleAction)))
	m.HandleFunc("GET /v1/state/backup", s.leaderOnly(s.auth(s.handleBackup)))
	s.hostRoutes(m)
	m.HandleFunc("GET /metrics", s.handleMetrics)
	m.Handle("/", dashboard.Handler())
	s.mux = m
}

// Run evaluates the gates every EvalInterval (and retries the plans not
// yet signed, and prunes keys pending too long) and refreshes the
// repository's timestamp and snapshot every RefreshInterval until ctx
// ends. tick, when not nil, replaces the interval timer (tests drive it).
func (s *Server) Run(ctx context.Context, tick <-chan time.Time) error {
	if s.opts.Replication != nil {
		return s.runReplica(ctx)
	}
	if tick == nil {
		t := time.NewTicker(s.opts.EvalInterval)
		defer t.Stop()
		tick = t.C
	}
	lastRefresh := s.clock.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		}
		s.tick(&lastRefresh)
	}
}

// tick is Run's work at each tick: the gates, then timestamp and snapshot
// re-signed when RefreshInterval has passed since *lastRefresh.
func (s *Server) tick(lastRefresh *time.Time) {
	if _, err := s.Evaluate(); err != nil && !errors.Is(err, ErrNotLeader) {
		s.log.Error("evaluate", "err", err)
	}
	now := s.clock.Now()
	if now.Sub(*lastRefresh) < s.opts.RefreshInterval {
		return
	}
	s.mu.Lock()
	err := s.writeRepo(func(r *tufrepo.Repo) error { return r.Refresh() })
	s.mu.Unlock()
	if err != nil {
		s.log.Error("refresh the repository's timestamp and snapshot", "err", err)
		return
	}
	*lastRefresh = now
}

// ErrReadOnly is returned by actions on a server opened ReadOnly.
var ErrReadOnly = errors.New("server: the state was opened read-only; give --repo and --keys to act on it")

// Evaluate runs the gates once, with the rollouts' SLO checks (their
// queries first, without the lock: slo.go), and commits their decisions in
// one change: a breached check halts its rollout as the gate does. Then it
// signs the plans still waiting to be signed and prunes keys pending too
// long.
func (s *Server) Evaluate() ([]controller.Decision, error) {
	checked := s.evaluateSLO()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.ReadOnly {
		return nil, ErrReadOnly
	}
	if !s.leads() {
		return nil, ErrNotLeader
	}
	breaches := 0
	ds, err := s.change(func() ([]controller.Decision, error) {
		now := s.clock.Now()
		s.reg.Prune(now)
		ds := s.ctl.Evaluate(now)
		halts, n := s.haltOnBreach(checked, now)
		breaches = n
		return append(ds, halts...), nil
	})
	if err == nil {
		s.metrics.sloBreaches.Add(float64(breaches))
	}
	s.retrySigning()
	return ds, err
}

// signPlan signs the channel's plan unless the repository already has
// exactly it. The caller holds s.mu.
func (s *Server) signPlan(ch uint32) error {
	b, err := json.Marshal(s.ctl.Plan(ch))
	if err != nil {
		return err
	}
	return s.writeRepo(func(repo *tufrepo.Repo) error {
		if t := repo.Targets()[rollout.RolloutTarget(ch)]; t != nil {
			sum := sha256.Sum256(b)
			if bytes.Equal(t.Hashes["sha256"], sum[:]) {
				return nil
			}
		}
		if err := repo.SetRollout(ch, b); err != nil {
			return fmt.Errorf("server: sign the plan of channel %d: %w", ch, err)
		}
		return nil
	})
}

// writeRepo changes the repository under its lock, on its state on disk
// (a publisher may have changed it since). The caller holds s.mu.
func (s *Server) writeRepo(fn func(*tufrepo.Repo) error) error {
	defer s.static.forget()
	update := func() error { return tufrepo.Update(s.opts.Repo, s.opts.Keys, s.clock, fn) }
	if s.opts.Replication != nil {
		return s.writeRepoShared(update)
	}
	return update()
}

// MaxTokenFile bounds the operator token file read.
const MaxTokenFile = 4 << 10

// LoadOrCreateToken reads dir/operator.token, or makes one (32 random
// bytes, hex, 0600, written durably). A token file others can read or
// write is refused with the chmod that fixes it (checkToken).
func LoadOrCreateToken(dir string) (string, error) {
	path := filepath.Join(dir, TokenFile)
	b, err := boundedio.ReadFile(path, MaxTokenFile)
	if err == nil {
		if err := checkToken(path); err != nil {
			return "", err
		}
		t := strings.TrimSpace(string(b))
		if len(t) < 32 || len(t) > 256 {
			return "", fmt.Errorf("server: %s is not a token; remove it and a new one is made", path)
		}
		return t, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("server: operator token: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	t := hex.EncodeToString(raw[:])
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("server: state directory: %w", err)
	}
	if err := atomicfile.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("server: write the operator token: %w", err)
	}
	return t, nil
}

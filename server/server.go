// Package server is ringfence-server serve: one HTTP server on which the
// TUF repository is served as static files (ETags, so an idle host's check
// is one small conditional request), hosts post signed telemetry batches,
// operators drive rollouts through a JSON API, Prometheus scrapes /metrics
// and people watch the dashboard. Behind it the rollout controller decides
// and the rollout role signs the plan each decision implies.
//
// Order of effects for every change (a telemetry batch, a gate decision,
// an operator's action), under one lock:
//  1. the controller applies it in memory;
//  2. fleetdb commits the hosts, rollouts, decisions and event ids, with
//     fsync (only then is a batch acknowledged);
//  3. the plans that changed are signed into the repository (rollout role,
//     then snapshot and timestamp).
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

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/dashboard"
	"github.com/ringfence/ringfence/fleetdb"
	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/rollout"
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

// Clock tells the time.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Options configure a Server.
type Options struct {
	Repo, Keys, State string
	Clock             Clock
	Log               *slog.Logger
	// CanaryHosts and CanaryTags make the canary group of rollouts started
	// without their own stages.
	CanaryHosts, CanaryTags []string
	// EvalInterval is how often Run evaluates the gates; RefreshInterval
	// how often it re-signs timestamp and snapshot.
	EvalInterval, RefreshInterval time.Duration
	// BatchesPerHost and BatchBurst rate-limit each host's telemetry.
	BatchesPerHost float64
	BatchBurst     int
	// MaxHosts bounds the hosts kept; a batch from a new host beyond it is
	// refused (403) until the fleet is pruned or the bound raised.
	MaxHosts int
	// ReadOnly opens the state to look at it (rollout status without a
	// running server): no repository or keys needed, nothing is signed,
	// and Start and Act refuse.
	ReadOnly bool
}

// Server is a running ringfence-server.
type Server struct {
	opts  Options
	clock Clock
	log   *slog.Logger
	token string

	mu  sync.Mutex // guards ctl, the repository's writes and db writes
	ctl *controller.Controller
	db  *fleetdb.DB

	static  *staticRepo
	limits  *limiter
	metrics *metrics
	mux     *http.ServeMux
}

// New opens the repository, the keys and the state, loads every rollout
// and re-signs any plan that lags its rollout's state.
func New(opts Options) (*Server, error) {
	if opts.Clock == nil {
		opts.Clock = systemClock{}
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
	if !opts.ReadOnly {
		// Checked once here, so that a wrong --repo fails at start-up; every
		// use opens it afresh (a publisher may change it meanwhile).
		if _, err := tufrepo.Open(opts.Repo, opts.Keys, opts.Clock); err != nil {
			return nil, fmt.Errorf("server: %w (is --repo a repository made by 'ringfence-server repo init'?)", err)
		}
	}
	token, err := LoadOrCreateToken(opts.State)
	if err != nil {
		return nil, err
	}
	db, err := fleetdb.Open(opts.State, time.Second)
	if err != nil {
		return nil, err
	}
	hosts, rollouts, err := db.Load()
	if err != nil {
		db.Close()
		return nil, err
	}
	ctl := controller.New(hosts, rollouts)
	ctl.CanaryHosts, ctl.CanaryTags = opts.CanaryHosts, opts.CanaryTags
	s := &Server{opts: opts, clock: opts.Clock, log: opts.Log, token: token, ctl: ctl, db: db,
		static:  newStaticRepo(opts.Repo),
		limits:  newLimiter(opts.BatchesPerHost, opts.BatchBurst),
		metrics: newMetrics()}
	if !opts.ReadOnly {
		for _, r := range ctl.Rollouts() {
			if err := s.signPlan(r); err != nil {
				db.Close()
				return nil, err
			}
		}
		if _, err := db.Prune(s.clock.Now()); err != nil {
			s.log.Warn("prune old event ids", "err", err)
		}
	}
	s.static.checkins = func() { s.metrics.checkins.Add(1) }
	s.routes()
	return s, nil
}

// Close closes the state.
func (s *Server) Close() error { return s.db.Close() }

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
	m.HandleFunc("GET /v1/rollouts", s.handleRollouts)
	m.HandleFunc("GET /v1/rollouts/{channel}", s.handleRollout)
	m.HandleFunc("POST /v1/rollouts", s.auth(s.handleStart))
	m.HandleFunc("POST /v1/rollouts/{channel}/{action}", s.auth(s.handleAction))
	m.HandleFunc("GET /metrics", s.handleMetrics)
	m.Handle("/", dashboard.Handler())
	s.mux = m
}

// Run evaluates the gates every EvalInterval and refreshes the repository's
// timestamp and snapshot every RefreshInterval until ctx ends. tick, when
// not nil, replaces the interval timer (tests drive it).
func (s *Server) Run(ctx context.Context, tick <-chan time.Time) error {
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
		if _, err := s.Evaluate(); err != nil {
			s.log.Error("evaluate", "err", err)
		}
		if now := s.clock.Now(); now.Sub(lastRefresh) >= s.opts.RefreshInterval {
			s.mu.Lock()
			err := s.writeRepo(func(r *tufrepo.Repo) error { return r.Refresh() })
			s.mu.Unlock()
			if err != nil {
				s.log.Error("refresh the repository's timestamp and snapshot", "err", err)
				continue
			}
			lastRefresh = now
		}
	}
}

// ErrReadOnly is returned by actions on a server opened ReadOnly.
var ErrReadOnly = errors.New("server: the state was opened read-only; give --repo and --keys to act on it")

// Evaluate runs the gates once and applies their decisions.
func (s *Server) Evaluate() ([]controller.Decision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.ReadOnly {
		return nil, ErrReadOnly
	}
	now := s.clock.Now()
	ds := s.ctl.Evaluate(now)
	return ds, s.commit("", nil, now, ds)
}

// commit persists what changed (with the event ids taken from host), then
// signs the plans that changed. The caller holds s.mu.
func (s *Server) commit(host string, ids []string, now time.Time, ds []controller.Decision) error {
	ch := s.ctl.TakeChanges()
	if err := s.db.Commit(host, ids, now, ch); err != nil {
		return fmt.Errorf("server: store: %w", err)
	}
	for _, d := range ds {
		s.metrics.decision(d.Kind)
		if d.Kind != controller.KindWait {
			s.log.Info("rollout decision", "kind", d.Kind, "stage", d.Stage, "actor", d.Actor, "reason", d.Reason)
		}
	}
	for _, c := range ch.Plans {
		r, _ := s.ctl.Rollout(c)
		if err := s.signPlan(r); err != nil {
			return err
		}
	}
	return nil
}

// signPlan signs r's plan unless the repository already has exactly it.
func (s *Server) signPlan(r *controller.Rollout) error {
	b, err := json.Marshal(r.Plan())
	if err != nil {
		return err
	}
	return s.writeRepo(func(repo *tufrepo.Repo) error {
		if t := repo.Targets()[rollout.RolloutTarget(r.Channel)]; t != nil {
			sum := sha256.Sum256(b)
			if bytes.Equal(t.Hashes["sha256"], sum[:]) {
				return nil
			}
		}
		if err := repo.SetRollout(r.Channel, b); err != nil {
			return fmt.Errorf("server: sign the plan of channel %d: %w", r.Channel, err)
		}
		return nil
	})
}

// writeRepo changes the repository under its lock, on its state on disk
// (a publisher may have changed it since). The caller holds s.mu.
func (s *Server) writeRepo(fn func(*tufrepo.Repo) error) error {
	defer s.static.forget()
	return tufrepo.Update(s.opts.Repo, s.opts.Keys, s.clock, fn)
}

// LoadOrCreateToken reads dir/operator.token, or makes one (32 random
// bytes, hex, 0600, written durably).
func LoadOrCreateToken(dir string) (string, error) {
	path := filepath.Join(dir, TokenFile)
	b, err := os.ReadFile(path)
	if err == nil {
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

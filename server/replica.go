package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/wire"
)

// Replicas (docs/scale.md): several servers on one database. Every replica
// serves the repository (pulled from the database into its --repo
// directory, so all serve the same bytes with the same ETags), takes
// telemetry into the database's inbox, and answers the API by passing it
// to the leader. One replica leads, by a lease in the database: it alone
// applies the inbox, evaluates the gates, decides and signs, and every
// commit and every push of the repository is fenced by its lease in the
// same transaction, so a leader paused past its lease records and signs
// nothing when it wakes up.

// Replication is what a replica needs of the database it shares with the
// others (cmd/ringfence-server adapts package fleetpg to it). Errors that
// mean "this replica does not, or no longer, lead" wrap ErrNotLeader.
type Replication interface {
	Store
	// Lead takes the leader lease, or renews it when this replica holds
	// it. Not leading is no error.
	Lead(ctx context.Context) (Leadership, error)
	// Resign ends the lease at once, if this replica holds it (a clean
	// shutdown), so another takes over without waiting for it to expire.
	Resign(ctx context.Context) error
	// Leader is the URL of the replica that leads now, "" when none does.
	Leader(ctx context.Context) (string, error)
	// CommitConsumed is Commit fenced by the lease, deleting the inbox
	// rows consumed in the same transaction.
	CommitConsumed(cc controller.Changes, rc admission.Changes, consumed []int64) error
	// Standing is a host's admission as the database holds it:
	// accepted (in the fleet), a record's state, or "" (never heard of).
	Standing(ctx context.Context, hostID string) (wire.Admission, error)
	// Enqueue stores a verified batch in the inbox, durably; the same
	// batch again is no new row. A batch of a host not in the fleet
	// (admitted false) may be refused sooner than the fleet's: anyone can
	// make keys, and the inbox must stay open to the fleet.
	Enqueue(ctx context.Context, hostID string, body []byte, signature string, admitted bool) error
	// Inbox returns up to max rows of the inbox, oldest first.
	Inbox(ctx context.Context, max int) ([]Queued, error)
	// PullRepo makes dir hold the database's repository; PushRepo uploads
	// what dir changed since version base, fenced by the lease (an error
	// wrapping ErrRepoMoved when another writer pushed since base).
	PullRepo(ctx context.Context, dir string) (version int64, err error)
	PushRepo(ctx context.Context, dir string, base int64) (version int64, err error)
	// RepoVersions delivers the repository's version when it changes,
	// until ctx ends.
	RepoVersions(ctx context.Context) <-chan int64
}

// Leadership is what Lead found.
type Leadership struct {
	// Leading: this replica holds the lease, until Deadline by this
	// process's clock unless renewed.
	Leading  bool
	Deadline time.Time
	// Fresh: the lease was taken anew (a new epoch): other leaders may
	// have committed since this replica last loaded the state.
	Fresh bool
	// Leader is the URL of the replica that leads, when another does.
	Leader string
}

// Queued is a telemetry batch in the inbox.
type Queued struct {
	ID        int64
	HostID    string
	Body      []byte
	Signature string
}

// ErrNotLeader: this replica does not lead (or no longer does); what it
// tried was not recorded.
var ErrNotLeader = errors.New("server: this replica does not hold the leader lease")

// ErrRepoMoved: another writer pushed the repository since it was pulled.
var ErrRepoMoved = errors.New("server: the shared repository changed since it was pulled")

// Defaults of the replicas' timing.
const (
	// DefaultLeaseTTL is how long a leader's lease lasts unless renewed:
	// a killed leader is replaced within about this time plus
	// DefaultLeaseCheck.
	DefaultLeaseTTL = 6 * time.Second
	// DefaultLeaseCheck is how often a replica renews its lease or tries
	// to take one.
	DefaultLeaseCheck = time.Second
	// DefaultInboxInterval is how often the leader applies the inbox.
	DefaultInboxInterval = 200 * time.Millisecond
	// maxDrain bounds the inbox rows applied in one commit.
	maxDrain = 2000
	// replicaTimeout bounds a replica's calls to the database.
	replicaTimeout = 30 * time.Second
	// proxiedHeader marks a request one replica passed to another: a
	// replica that does not lead answers it with 503 instead of passing it
	// on again (no loops while leadership moves).
	proxiedHeader = "X-Ringfence-Proxied"
	// noLeaderRetry is the Retry-After, in seconds, while no replica leads.
	noLeaderRetry = 2
)

// Leads reports whether this server may act as the leader now (a server
// alone always may).
func (s *Server) Leads() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leads()
}

// leads reports whether this replica may act as the leader now: it holds
// the lease and its deadline has not passed. The caller holds s.mu.
func (s *Server) leads() bool {
	return s.opts.Replication == nil || (s.leading && time.Now().Before(s.leaseDeadline))
}

// stepDown stops acting as the leader after a fenced write was refused;
// the next Lead loads the state again before this replica leads again.
// The caller holds s.mu.
func (s *Server) stepDown(err error) {
	if s.leading {
		s.log.Warn("no longer the leader: a write was refused by the lease's fence", "err", err)
	}
	s.leading, s.mustLoad = false, true
}

// lead renews or takes the lease, and on becoming the leader loads the
// state, brings the repository up to date and signs the plans that lag.
func (s *Server) lead(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, replicaTimeout)
	defer cancel()
	l, err := s.opts.Replication.Lead(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		if s.leading {
			s.metrics.leader.Set(1)
		} else {
			s.metrics.leader.Set(0)
		}
	}()
	if err != nil {
		s.log.Error("leader lease", "err", err)
		return // leading until the deadline passes, if it was
	}
	if !l.Leading {
		if s.leading {
			s.log.Warn("no longer the leader", "leader", l.Leader)
		}
		s.leading, s.mustLoad = false, true
		return
	}
	if l.Fresh || s.mustLoad || !s.leading {
		if err := s.takeOver(ctx); err != nil {
			s.log.Error("take over as leader: load the state", "err", err)
			s.leading, s.mustLoad = false, true
			return
		}
	}
	s.leading, s.leaseDeadline = true, l.Deadline
}

// takeOver loads the state as the database holds it (every commit of the
// previous leaders), pulls the repository and signs the plans that lag
// their rollouts (a leader that died between commit and signature). The
// caller holds s.mu.
func (s *Server) takeOver(ctx context.Context) error {
	st, err := s.store.Load()
	if err != nil {
		return err
	}
	s.ctl = controller.New(st.Hosts, st.Rollouts)
	s.ctl.CanaryHosts, s.ctl.CanaryTags = s.opts.CanaryHosts, s.opts.CanaryTags
	s.reg = admission.New(st.Records, st.Tokens)
	s.reg.MaxPending, s.reg.PendingTTL = s.opts.MaxPending, s.opts.PendingTTL
	s.mustLoad = false
	s.leading, s.leaseDeadline = true, time.Now().Add(DefaultLeaseCheck) // until Lead's deadline is set
	s.log.Info("leading: state loaded", "hosts", s.ctl.Hosts(), "rollouts", len(s.ctl.Rollouts()))
	if _, err := s.pullRepo(ctx); err != nil {
		s.log.Error("pull the shared repository", "err", err)
	}
	clear(s.unsigned)
	for _, r := range s.ctl.Rollouts() {
		s.sign(r.Channel)
	}
	if s.slo != nil {
		s.slo.Reset() // it did not watch while another led: the graces start again
	}
	s.warnUnwatched()
	return nil
}

// pullRepo brings the local repository directory up to the database's.
// The caller holds s.mu.
func (s *Server) pullRepo(ctx context.Context) (int64, error) {
	defer s.static.forget()
	v, err := s.opts.Replication.PullRepo(ctx, s.opts.Repo)
	if err != nil {
		return 0, err
	}
	s.repoVersion = v
	return v, nil
}

// writeRepoShared is writeRepo on a replica: pull, change, push fenced by
// the lease; when another writer (a publisher) pushed meanwhile, again
// from its version. The caller holds s.mu.
func (s *Server) writeRepoShared(fn func() error) error {
	if !s.leads() {
		return fmt.Errorf("sign: %w", ErrNotLeader)
	}
	ctx, cancel := context.WithTimeout(context.Background(), replicaTimeout)
	defer cancel()
	for try := 0; ; try++ {
		base, err := s.pullRepo(ctx)
		if err != nil {
			return err
		}
		if err := fn(); err != nil {
			return err
		}
		v, err := s.opts.Replication.PushRepo(ctx, s.opts.Repo, base)
		switch {
		case err == nil:
			s.repoVersion = v
			return nil
		case errors.Is(err, ErrRepoMoved) && try < 3:
			continue
		case errors.Is(err, ErrNotLeader):
			s.stepDown(err)
		}
		// The local directory holds what was not pushed: the next pull
		// puts the database's back.
		s.repoVersion = -1
		return err
	}
}

// drain applies the inbox, as the leader: up to maxDrain batches per
// commit, which deletes them in the same fenced transaction. Each batch
// is verified again (the database is not the host) and applied as if it
// had just arrived (handleTelemetry); one that fails is logged and
// dropped, not retried forever.
func (s *Server) drain(ctx context.Context) {
	for {
		ctx, cancel := context.WithTimeout(ctx, replicaTimeout)
		items, err := s.opts.Replication.Inbox(ctx, maxDrain)
		cancel()
		if err != nil {
			s.log.Error("read the telemetry inbox", "err", err)
			return
		}
		if len(items) == 0 {
			return
		}
		s.mu.Lock()
		if !s.leads() {
			s.mu.Unlock()
			return
		}
		s.consumed = s.consumed[:0]
		_, err = s.change(func() ([]controller.Decision, error) {
			var ds []controller.Decision
			for _, it := range items {
				s.consumed = append(s.consumed, it.ID)
				b, err := wire.VerifyBatch(it.Body, it.Signature)
				if err != nil || b.HostID != it.HostID {
					s.log.Error("telemetry inbox: a batch does not verify; dropped", "id", it.ID, "host", it.HostID, "err", err)
					continue
				}
				_, _, res, err := s.apply(b)
				if err != nil {
					s.log.Warn("telemetry inbox: a batch could not take effect; dropped", "id", it.ID, "host", it.HostID, "err", err)
					continue
				}
				ds = append(ds, res.Decisions...)
			}
			return ds, nil
		})
		s.consumed = s.consumed[:0]
		s.mu.Unlock()
		if err != nil || len(items) < maxDrain {
			return // a failed commit: the rows stay, and the next tick tries again
		}
	}
}

// queueTelemetry is handleTelemetry on a replica, for a verified batch:
// the batch goes to the database's inbox, and is acknowledged once it is
// committed there; the leader applies it. A host not in the fleet is
// refused as pending (its events stay on the host, and count once it is
// admitted), but its batch is queued all the same, so that the leader
// records it as pending or admits it by its enrolment token.
func (s *Server) queueTelemetry(w http.ResponseWriter, r *http.Request, b *wire.Batch, body []byte) {
	ctx, cancel := context.WithTimeout(r.Context(), replicaTimeout)
	defer cancel()
	standing, err := s.opts.Replication.Standing(ctx, b.HostID)
	if err != nil {
		s.log.Error("telemetry batch: look the host up", "host", b.HostID, "err", err)
		refuse(w, http.StatusServiceUnavailable, "the batch could not be stored; retry later", "")
		return
	}
	if standing == wire.AdmissionRejected || standing == wire.AdmissionDecommissioned {
		s.metrics.rejected("not-admitted")
		refuse(w, http.StatusForbidden, fmt.Sprintf("host %s is %s; an operator can accept it again with 'ringfence-server hosts accept'", b.HostID, standing), standing)
		return
	}
	if err := s.opts.Replication.Enqueue(ctx, b.HostID, body, r.Header.Get(wire.SignatureHeader), standing == wire.AdmissionAccepted); err != nil {
		s.log.Error("telemetry batch: queue it", "host", b.HostID, "err", err)
		w.Header().Set("Retry-After", "10")
		refuse(w, http.StatusServiceUnavailable, "the batch could not be stored; retry later", "")
		return
	}
	if standing != wire.AdmissionAccepted {
		s.metrics.rejected("not-admitted")
		retry := pendingRetry
		msg := fmt.Sprintf("host %s is pending admission: nothing it reports counts until an operator accepts it ('ringfence-server hosts accept %s') or it presents a valid enrolment token", b.HostID, b.HostID)
		if b.EnrolmentToken != "" {
			retry = 1 // the leader decides on the token within moments (it applies the inbox every InboxInterval)
			msg = fmt.Sprintf("host %s: its enrolment token is being checked; send again shortly", b.HostID)
		}
		w.Header().Set("Retry-After", strconv.Itoa(retry))
		refuse(w, http.StatusForbidden, msg, wire.AdmissionPending)
		return
	}
	s.metrics.queued.Add(1)
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, http.StatusOK, wire.Response{Accepted: eventIDs(b), Admission: wire.AdmissionAccepted})
}

// leaderOnly serves next where this replica leads, and passes the request
// to the leader's URL otherwise (a reverse proxy, so the answer is the
// leader's): the API answers the same on every replica. With no leader it
// answers 503 with a Retry-After.
func (s *Server) leaderOnly(next http.HandlerFunc) http.HandlerFunc {
	if s.opts.Replication == nil {
		return next
	}
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		leads := s.leads()
		s.mu.Unlock()
		if leads {
			next(w, r)
			return
		}
		leader := ""
		if r.Header.Get(proxiedHeader) == "" {
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			l, err := s.opts.Replication.Leader(ctx)
			cancel()
			if err != nil {
				s.log.Error("find the leader", "err", err)
			}
			leader = l
		}
		u, err := url.Parse(leader)
		if leader == "" || err != nil || u.Scheme == "" || u.Host == "" {
			w.Header().Set("Retry-After", strconv.Itoa(noLeaderRetry))
			httpError(w, http.StatusServiceUnavailable, "no ringfence-server replica leads at the moment (a takeover takes a few seconds); retry shortly")
			return
		}
		p := &httputil.ReverseProxy{
			Transport: proxyTransport,
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(u)
				pr.Out.Host = pr.In.Host
				pr.Out.Header.Set(proxiedHeader, "1")
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				s.log.Warn("pass a request to the leader", "leader", leader, "err", err)
				w.Header().Set("Retry-After", strconv.Itoa(noLeaderRetry))
				if r.Method == http.MethodGet || r.Method == http.MethodHead {
					// Nothing was done: the client may ask again (it waits
					// out a 503 with a Retry-After).
					httpError(w, http.StatusServiceUnavailable, "the leading replica did not answer (it may be paused, or a takeover under way); retry shortly")
					return
				}
				// An action may or may not have been taken: the operator
				// checks before repeating it.
				httpError(w, http.StatusBadGateway, "the leading replica did not answer: whether the action was taken is not known; check (rollout status, hosts show) before you repeat it")
			},
		}
		p.ServeHTTP(w, r)
	}
}

// proxyTransport passes requests to the leader. A leader that is paused
// (stopped, or its machine hung) still accepts connections in its kernel
// and never answers: without a bound on the wait for its answer, every
// request passed to it would hang as long as the client lets it.
var proxyTransport = &http.Transport{
	Proxy:                 nil, // the replicas talk directly
	DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	ResponseHeaderTimeout: proxyAnswerTimeout,
	IdleConnTimeout:       90 * time.Second,
	MaxIdleConnsPerHost:   16,
	TLSHandshakeTimeout:   5 * time.Second,
}

// proxyAnswerTimeout bounds the wait for the leader's answer (its
// headers; a backup then streams as long as it takes). It is longer than
// the API's own slowest answer, an action waiting for a takeover's load.
const proxyAnswerTimeout = 10 * time.Second

// runReplica is Run on a replica: the lease every DefaultLeaseCheck, the
// inbox every InboxInterval and the gates every EvalInterval while
// leading, and the repository pulled whenever it changes.
func (s *Server) runReplica(ctx context.Context) error {
	leaseT := time.NewTicker(s.opts.LeaseCheck)
	defer leaseT.Stop()
	inboxT := time.NewTicker(s.opts.InboxInterval)
	defer inboxT.Stop()
	evalT := time.NewTicker(s.opts.EvalInterval)
	defer evalT.Stop()
	versions := s.opts.Replication.RepoVersions(ctx)
	lastRefresh := s.clock.Now()
	s.lead(ctx)
	for {
		s.mu.Lock()
		leads := s.leads()
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if leads {
				s.drain(rctx) // what was acknowledged takes effect before another leads
			}
			s.mu.Lock()
			s.leading = false
			s.mu.Unlock()
			if err := s.opts.Replication.Resign(rctx); err != nil {
				s.log.Warn("resign the leader lease", "err", err)
			}
			return nil
		case <-leaseT.C:
			s.lead(ctx)
			s.mu.Lock()
			if s.repoVersion < 0 { // a push failed: the directory holds what the database does not
				if _, err := s.pullRepo(ctx); err != nil {
					s.log.Error("pull the shared repository", "err", err)
				}
			}
			s.mu.Unlock()
		case <-inboxT.C:
			if leads {
				s.drain(ctx)
			}
		case <-evalT.C:
			if !leads {
				continue
			}
			s.tick(&lastRefresh)
		case v, ok := <-versions:
			if !ok {
				versions = nil
				continue
			}
			s.mu.Lock()
			if v != s.repoVersion {
				if _, err := s.pullRepo(ctx); err != nil {
					s.log.Error("pull the shared repository", "err", err)
				}
			}
			s.mu.Unlock()
		}
	}
}

// seedRepo makes the local repository directory the shared one at start:
// it pulls the database's, or, when the database holds none yet (the
// first replica on it), pushes the local one to start it.
func seedRepo(r Replication, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), replicaTimeout)
	defer cancel()
	v, err := r.PullRepo(ctx, dir)
	if err != nil {
		return fmt.Errorf("server: pull the shared repository into %s: %w", dir, err)
	}
	if v > 0 {
		return nil
	}
	if _, err := r.PushRepo(ctx, dir, 0); err != nil && !errors.Is(err, ErrRepoMoved) {
		return fmt.Errorf("server: start the shared repository from %s: %w", dir, err)
	}
	if _, err := r.PullRepo(ctx, dir); err != nil { // another replica seeded it first
		return fmt.Errorf("server: pull the shared repository into %s: %w", dir, err)
	}
	return nil
}

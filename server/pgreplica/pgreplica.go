// Package pgreplica makes a ringfence-server a replica on PostgreSQL: it
// adapts package fleetpg (the state, the leader lease, the telemetry inbox:
// fleetpg.DB; the shared repository: fleetpg.Repo) to what a server
// replica needs (server.Replication), and keeps the lease the replica
// holds between its renewals.
package pgreplica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/fleetdb"
	"github.com/ringfence/ringfence/fleetpg"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/wire"
)

// Replica is a server replica's hold on the database.
type Replica struct {
	db   *fleetpg.DB
	repo *fleetpg.Repo
	ttl  time.Duration

	mu    sync.Mutex
	name  string // the URL other replicas reach this one at: the lease's holder
	lease fleetpg.Lease
	held  bool
	// pulled is the repository version the local directory holds, clean
	// while nothing was written to it that the database lacks.
	pulled int64
	clean  bool
}

var _ server.Replication = (*Replica)(nil)

// Open opens the database dsn as a replica whose leases last ttl, and its
// repository; ctx bounds the connections and the migrations.
func Open(ctx context.Context, dsn string, ttl time.Duration) (*Replica, error) {
	db, err := fleetpg.Open(ctx, dsn, fleetpg.Options{Timeout: lockWait, Replica: true})
	if err != nil {
		return nil, err
	}
	repo, err := fleetpg.OpenRepo(ctx, dsn)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Replica{db: db, repo: repo, ttl: ttl}, nil
}

// SetName sets the URL the replica is reached at (the lease's holder), once
// it listens: before the server runs.
func (r *Replica) SetName(url string) {
	r.mu.Lock()
	r.name = url
	r.mu.Unlock()
}

func (r *Replica) Load() (fleetdb.State, error) { return r.db.Load() }

func (r *Replica) Commit(cc controller.Changes, rc admission.Changes) error {
	return r.CommitConsumed(cc, rc, nil)
}

func (r *Replica) Backup(w io.Writer) (int64, error) { return r.db.Backup(w) }

func (r *Replica) Close() error {
	err := r.db.Close() // releases a lease it holds
	if rerr := r.repo.Close(); err == nil {
		err = rerr
	}
	return err
}

// notLeader makes fleetpg's "not the leader" errors server.ErrNotLeader.
func notLeader(err error) error {
	if errors.Is(err, fleetpg.ErrNotLeader) || errors.Is(err, fleetpg.ErrStale) {
		return fmt.Errorf("%w: %w", server.ErrNotLeader, err)
	}
	return err
}

func (r *Replica) Lead(ctx context.Context) (server.Leadership, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held {
		l, err := r.db.Renew(ctx, r.lease)
		if err == nil {
			r.lease = l
			return server.Leadership{Leading: true, Deadline: l.Deadline}, nil
		}
		if !errors.Is(err, fleetpg.ErrLeaseLost) {
			return server.Leadership{}, err // unknown: the server leads until the deadline, and asks again
		}
		r.held = false
	}
	if r.name == "" {
		return server.Leadership{}, errors.New("the replica's URL is not known yet")
	}
	l, err := r.db.Acquire(ctx, r.name, r.ttl)
	var held *fleetpg.LeaseHeldError
	if errors.As(err, &held) {
		return server.Leadership{Leader: held.Holder}, nil
	}
	if err != nil {
		return server.Leadership{}, err
	}
	r.lease, r.held = l, true
	return server.Leadership{Leading: true, Fresh: true, Deadline: l.Deadline}, nil
}

func (r *Replica) Resign(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.held {
		return nil
	}
	r.held = false
	return r.db.Release(ctx, r.lease)
}

func (r *Replica) Leader(ctx context.Context) (string, error) {
	l, err := r.db.Leader(ctx)
	if errors.Is(err, fleetpg.ErrNoLeader) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return l.Holder, nil
}

func (r *Replica) CommitConsumed(cc controller.Changes, rc admission.Changes, consumed []int64) error {
	return notLeader(r.db.CommitConsumed(cc, rc, consumed))
}

func (r *Replica) Standing(ctx context.Context, hostID string) (wire.Admission, error) {
	return r.db.Standing(ctx, hostID)
}

func (r *Replica) Enqueue(ctx context.Context, hostID string, body []byte, signature string, admitted bool) error {
	r.mu.Lock()
	name := r.name
	r.mu.Unlock()
	_, err := r.db.Enqueue(ctx, fleetpg.InboxItem{HostID: hostID, Body: body, Signature: signature, ReceivedBy: name, Stranger: !admitted})
	return err
}

func (r *Replica) Inbox(ctx context.Context, max int) ([]server.Queued, error) {
	items, err := r.db.Inbox(ctx, max)
	if err != nil {
		return nil, err
	}
	out := make([]server.Queued, len(items))
	for i, it := range items {
		out[i] = server.Queued{ID: it.ID, HostID: it.HostID, Body: it.Body, Signature: it.Signature}
	}
	return out, nil
}

// PullRepo pulls unless the directory already holds the database's
// version (cleanly): a pull compares every file.
func (r *Replica) PullRepo(ctx context.Context, dir string) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.clean {
		if v, err := r.repo.Version(ctx); err == nil && v == r.pulled {
			return v, nil
		}
	}
	st, err := r.repo.Pull(ctx, dir)
	if err != nil {
		r.clean = false
		return 0, err
	}
	r.pulled, r.clean = st.Version, true
	return st.Version, nil
}

// PushRepo pushes fenced by the lease this replica holds; without one,
// only the first push to an empty database (base 0: the first replica
// seeds it).
func (r *Replica) PushRepo(ctx context.Context, dir string, base int64) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var fence *fleetpg.Lease
	switch {
	case r.held:
		l := r.lease
		fence = &l
	case base != 0:
		return 0, fmt.Errorf("push the repository: %w", server.ErrNotLeader)
	}
	r.clean = false
	v, err := r.repo.Push(ctx, dir, base, fence)
	if errors.Is(err, fleetpg.ErrRepoMoved) {
		return 0, fmt.Errorf("%w: %w", server.ErrRepoMoved, err)
	}
	if err != nil {
		return 0, notLeader(err)
	}
	r.pulled, r.clean = v, true
	return v, nil
}

func (r *Replica) RepoVersions(ctx context.Context) <-chan int64 {
	return r.repo.Watch(ctx, repoPoll)
}

// repoPoll is how often a replica asks for the repository's version when
// notifications do not come (they are lost while a connection is down).
const repoPoll = 2 * time.Second

// lockWait is how long Open waits for a server that uses the database
// alone to let go of it.
const lockWait = 5 * time.Second

// DB is the replica's database, for the log (Host, Database).
func (r *Replica) DB() *fleetpg.DB { return r.db }

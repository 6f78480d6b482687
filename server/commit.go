package server

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/fleetdb"
)

// Store is where the server keeps its state: fleetdb.DB (bbolt) is one.
// Commit is all or nothing, and durable when it returns nil.
type Store interface {
	Load() (fleetdb.State, error)
	Commit(controller.Changes, admission.Changes) error
	Backup(w io.Writer) (int64, error)
	Close() error
}

// ErrStore is returned when a change could not be committed: nothing of
// it took effect (memory is as before), and the caller may retry.
var ErrStore = errors.New("server: the state could not be stored; nothing changed; retry later")

// storeHealth is the last commit's outcome, for the API and the metrics.
type storeHealth struct {
	Failures  uint64    `json:"failures"`             // commits failed since start
	LastError string    `json:"last_error,omitempty"` // the latest failure, until a commit succeeds
	Since     time.Time `json:"since,omitzero"`       // when the failures started
}

// unsigned is a plan that is committed but not yet signed into the
// repository: Run retries it until it is.
type unsigned struct {
	Error string    `json:"error"`
	Since time.Time `json:"since"`
}

// change applies fn to the controller and the registry and commits what it
// changed, in this order (the caller holds s.mu):
//  1. fn decides: it changes the controller and the registry in memory,
//     tentatively (each keeps a before-image of what it touched);
//  2. the store commits every change in one transaction, with fsync;
//  3. on success both settle, and only then are the decisions logged and
//     counted and the changed plans signed (a failed signature is kept in
//     s.unsigned and retried by Run); on failure both undo, so memory, the
//     API and the plans show exactly what is on disk, and ErrStore says to
//     retry (a host resends its batch; the gate decides again at its next
//     evaluation; an operator repeats the action).
//
// No reader sees the tentative state: every reader takes s.mu.
func (s *Server) change(fn func() ([]controller.Decision, error)) ([]controller.Decision, error) {
	defer func() { s.counted = s.counted[:0] }()
	ds, err := fn()
	if err != nil {
		s.ctl.Undo()
		s.reg.Undo()
		return nil, err
	}
	cc, rc := s.ctl.Changes(), s.reg.Changes()
	if cc.Empty() && rc.Empty() && len(s.consumed) == 0 {
		s.ctl.Settle()
		s.reg.Settle()
		s.countBatches()
		return ds, nil
	}
	if err := s.commit(cc, rc); err != nil {
		s.ctl.Undo()
		s.reg.Undo()
		now := s.clock.Now()
		if s.health.LastError == "" {
			s.health.Since = now
		}
		s.health.Failures++
		s.health.LastError = err.Error()
		s.metrics.storeFailures.Add(1)
		s.log.Error("commit the state; nothing changed", "err", err, "failures", s.health.Failures)
		return nil, fmt.Errorf("%w (%v)", ErrStore, err)
	}
	s.ctl.Settle()
	s.reg.Settle()
	s.countBatches()
	if s.health.LastError != "" {
		s.log.Info("the state commits again", "after_failures", s.health.Failures)
		s.health.LastError, s.health.Since = "", time.Time{}
	}
	for _, d := range ds {
		s.metrics.decision(d.Kind)
		if d.Kind != controller.KindWait {
			s.log.Info("rollout decision", "kind", d.Kind, "stage", d.Stage, "actor", d.Actor, "reason", d.Reason)
		}
	}
	for _, ch := range cc.Plans {
		s.sign(ch)
	}
	return ds, nil
}

// commit stores what changed: through the replica's fenced commit, which
// also deletes the inbox rows applied (s.consumed), when the server is a
// replica; in the store otherwise.
func (s *Server) commit(cc controller.Changes, rc admission.Changes) error {
	if s.opts.Replication != nil {
		err := s.opts.Replication.CommitConsumed(cc, rc, s.consumed)
		if err != nil && errors.Is(err, ErrNotLeader) {
			s.stepDown(err)
		}
		return err
	}
	return s.store.Commit(cc, rc)
}

// countBatches counts the committed batches' events in the metrics.
func (s *Server) countBatches() {
	for _, c := range s.counted {
		s.metrics.batch(c.b, c.lastSeq, s.versionLabel)
	}
}

// sign signs the channel's plan, or keeps it in s.unsigned to retry. The
// caller holds s.mu.
func (s *Server) sign(ch uint32) {
	err := s.signPlan(ch)
	if err == nil {
		if _, was := s.unsigned[ch]; was {
			s.log.Info("plan signed after earlier failures", "channel", ch)
		}
		delete(s.unsigned, ch)
		return
	}
	u, was := s.unsigned[ch]
	if !was {
		u.Since = s.clock.Now()
	}
	u.Error = err.Error()
	s.unsigned[ch] = u
	s.metrics.signFailures.Add(1)
	s.log.Error("sign the plan; the decision is stored and signing is retried", "channel", ch, "err", err)
}

// retrySigning signs every plan that is committed but not yet signed. The
// caller holds s.mu.
func (s *Server) retrySigning() {
	for _, ch := range slices.Sorted(maps.Keys(s.unsigned)) {
		s.sign(ch)
	}
}

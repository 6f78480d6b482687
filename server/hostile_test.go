package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/fleetdb"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/wire"
)

// The tests in this file replay the attacks of a security review (issue
// 14, docs/security.md) against a real server on loopback: every request
// goes through the public telemetry endpoint with keys the attacker made.

// fleetOf admits canaries hosts tagged canary and others untagged, and has
// each report version running.
func (l *lab) fleetOf(t *testing.T, canaries, others int, running uint32) (cs, os []*host) {
	t.Helper()
	for range canaries {
		cs = append(cs, newHost(t, "canary"))
	}
	for range others {
		os = append(os, newHost(t, ""))
	}
	l.admit(t, append(cs, os...)...)
	for _, h := range append(cs, os...) {
		code, ans := l.post(t, h, h.batch(running))
		require.Equal(t, http.StatusOK, code, ans)
	}
	return cs, os
}

func (l *lab) startRollout(t *testing.T, to, from uint32) {
	t.Helper()
	_, _, err := l.client().Start(context.Background(), server.StartRequest{ActionRequest: server.ActionRequest{Who: "alice", Why: "weekly"},
		Channel: 291, Version: to, From: from,
		Stages: []server.StageRequest{{Name: "canary", Tags: []string{"canary"}, Bake: "30m", MinHosts: 5}, {Name: "all", Percent: 100, MinHosts: 5}}})
	require.NoError(t, err)
}

func (l *lab) overview(t *testing.T) server.Overview {
	t.Helper()
	var o server.Overview
	require.NoError(t, json.Unmarshal([]byte(body(t, get(t, l.http.URL+"/v1/rollouts"))), &o))
	return o
}

// Finding 1: one forged batch from a fresh key tagged canary, reporting a
// revert, halted any rollout and denied its version for good; without the
// tag, 200 made-up controls and 2 made-up treated reverts pushed the gate
// past its threshold. Now neither counts: the keys are not admitted.
func TestHostileForgedCanaryRevert(t *testing.T) {
	l := newLab(t, server.Options{BatchesPerHost: 1e6, BatchBurst: 1 << 20})
	l.fleetOf(t, 5, 20, 1001)
	l.startRollout(t, 1002, 1001)

	forger := newHost(t, "canary")
	code, ans := l.post(t, forger, forger.batch(1001, wire.Event{Kind: wire.EventReverted, Version: 1002, Reason: "load-crash", Critical: true}))
	require.Equal(t, http.StatusForbidden, code, ans)
	require.Contains(t, ans, `"admission":"pending"`)

	for i := range 202 {
		h := newHost(t, "")
		b := h.batch(1001)
		if i < 2 {
			b = h.batch(1002, wire.Event{Kind: wire.EventInstalled, Version: 1002}, wire.Event{Kind: wire.EventReverted, Version: 1002, Reason: "load-crash"})
		}
		code, _ := l.post(t, h, b)
		require.Equal(t, http.StatusForbidden, code)
	}
	l.clock.Advance(time.Minute)
	_, err := l.srv.Evaluate()
	require.NoError(t, err)

	o := l.overview(t)
	v := o.Rollouts[0]
	require.Equal(t, controller.StateRunning, v.State, "decisions: %+v", v.Decisions)
	require.Empty(t, v.Deny)
	require.Zero(t, v.Gate.TreatedFailures+v.Gate.ControlFailures)
	require.Equal(t, 0.0, v.Gate.Statistic)
	require.Equal(t, int64(25), v.Gate.Control, "only the admitted hosts count (the canaries have not installed yet)")
	require.Equal(t, 25, o.Hosts)
	require.Equal(t, 203, o.Pending)
	m := body(t, get(t, l.http.URL+"/metrics"))
	require.Contains(t, m, `ringfence_telemetry_rejected_total{reason="not-admitted"} 203`)
	require.NotContains(t, m, `type="reverted"`, "nothing a stranger sent reaches the metrics")
}

// Finding 2: made-up hosts reporting the new version healthy advanced the
// canary stage while the real canaries were mid-trial, and completed the
// rollout. Now strangers are refused, and admitted hosts whose stage the
// signed plan did not give the version count nowhere (off-plan).
func TestHostileFakeHealthyReports(t *testing.T) {
	l := newLab(t, server.Options{BatchesPerHost: 1e6, BatchBurst: 1 << 20})
	canaries, others := l.fleetOf(t, 5, 10, 1001)
	l.startRollout(t, 1002, 1001)
	for _, c := range canaries { // mid-trial: installed, not yet healthy
		code, ans := l.post(t, c, c.batch(1002, wire.Event{Kind: wire.EventInstalled, Version: 1002}))
		require.Equal(t, http.StatusOK, code, ans)
	}
	for range 5 {
		h := newHost(t, "canary")
		code, _ := l.post(t, h, h.batch(1002, wire.Event{Kind: wire.EventInstalled, Version: 1002}, wire.Event{Kind: wire.EventHealthy, Version: 1002}))
		require.Equal(t, http.StatusForbidden, code)
	}
	for _, h := range others[:5] { // admitted, but outside the canary stage
		h.tag = "canary" // claims it; the server's record says otherwise
		code, ans := l.post(t, h, h.batch(1002, wire.Event{Kind: wire.EventInstalled, Version: 1002}, wire.Event{Kind: wire.EventHealthy, Version: 1002}))
		require.Equal(t, http.StatusOK, code, ans)
	}
	l.clock.Advance(31 * time.Minute) // past the canary stage's bake
	for _, c := range canaries {
		code, _ := l.post(t, c, c.batch(1002))
		require.Equal(t, http.StatusOK, code)
	}
	for _, h := range others {
		v := uint32(1001)
		if h.tag != "" {
			v = 1002
		}
		code, _ := l.post(t, h, h.batch(v))
		require.Equal(t, http.StatusOK, code)
	}
	_, err := l.srv.Evaluate()
	require.NoError(t, err)
	v := l.srv.Status()[0]
	require.Equal(t, controller.StateRunning, v.State)
	require.Equal(t, 0, v.Stage, "the canary stage waits for its own hosts")
	require.Equal(t, int64(0), v.Gate.Healthy)
	require.Equal(t, int64(5), v.Gate.OffPlan)
	require.Contains(t, v.Decisions[0].Reason, "0 of the 5 hosts needed reported healthy")
	p := l.plan(t)
	require.Equal(t, 1, len(p.Stages)-1, "only the canary stage has the new version")
	require.Len(t, p.Stages[0].Hosts, 5)
}

// Finding 3: halting or rolling back a first rollout (from no content)
// left a plan that would not sign, wedged the server, and it exited at every
// restart. Now the rollback signs a plan that gives nobody content, and the
// server restarts and starts the next rollout.
func TestFirstRolloutHaltsAndRestarts(t *testing.T) {
	l := newLab(t, server.Options{})
	canaries, _ := l.fleetOf(t, 3, 5, 0)
	l.startRollout(t, 1001, 0)
	require.Equal(t, uint32(1001), l.plan(t).Stages[0].Version)

	code, ans := l.post(t, canaries[0], canaries[0].batch(0, wire.Event{Kind: wire.EventInstalled, Version: 1001},
		wire.Event{Kind: wire.EventReverted, Version: 1001, Reason: "load-crash", Critical: true}))
	require.Equal(t, http.StatusOK, code, ans)
	v := l.srv.Status()[0]
	require.Equal(t, controller.StateRolledBack, v.State)
	require.True(t, v.PlanSigned, v.SignError)
	p := l.plan(t)
	require.True(t, p.NoContent(), "the signed plan says: no content")
	require.Equal(t, []uint32{1001}, p.Deny)

	l.stop()
	l.start(t, server.Options{})
	require.Equal(t, controller.StateRolledBack, l.srv.Status()[0].State)
	l.startRollout(t, 1002, 0)
	require.Equal(t, uint32(1002), l.plan(t).Stages[0].Version)
}

// failingStore is a real fleetdb store whose commits fail while fail is set.
type failingStore struct {
	*fleetdb.DB
	mu   sync.Mutex
	fail error
}

func (f *failingStore) Commit(cc controller.Changes, rc admission.Changes) error {
	f.mu.Lock()
	err := f.fail
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.DB.Commit(cc, rc)
}

func (f *failingStore) set(err error) {
	f.mu.Lock()
	f.fail = err
	f.mu.Unlock()
}

// Finding 4 (injected): a failed commit used to leave memory changed (the
// API said ROLLED-BACK, the plan still shipped the version, a restart
// forgot the halt). Now a failed commit changes nothing, says so (API,
// metric, log), and the resent batch halts once the store works.
func TestCommitFailureChangesNothing(t *testing.T) {
	l := newLab(t, server.Options{})
	canaries, _ := l.fleetOf(t, 5, 5, 1001)
	l.startRollout(t, 1002, 1001)
	l.stop()
	db, err := fleetdb.Open(l.state, fleetdb.Options{Timeout: time.Second})
	require.NoError(t, err)
	store := &failingStore{DB: db}
	l.start(t, server.Options{Store: store})

	store.set(errors.New("injected: commit failed"))
	revert := canaries[0].batch(1001, wire.Event{Kind: wire.EventInstalled, Version: 1002},
		wire.Event{ID: "reverted-291-1002-load-crash", Kind: wire.EventReverted, Version: 1002, Reason: "load-crash", Critical: true})
	code, ans := l.post(t, canaries[0], revert)
	require.Equal(t, http.StatusServiceUnavailable, code, ans)
	o := l.overview(t)
	require.Equal(t, controller.StateRunning, o.Rollouts[0].State, "memory shows what is on disk")
	require.Contains(t, o.Store.LastError, "injected")
	require.Equal(t, uint64(1), o.Store.Failures)
	require.Equal(t, uint32(1002), l.plan(t).Stages[0].Version, "the signed plan did not move")
	require.Contains(t, body(t, get(t, l.http.URL+"/metrics")), "ringfence_store_failing 1")
	_, _, err = l.client().Act(context.Background(), 291, controller.KindPause, "bob", "x")
	var apiErr *server.APIError
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, http.StatusServiceUnavailable, apiErr.Code, "an operator's action too: nothing changed, retry")
	_, err = l.srv.Evaluate()
	require.ErrorIs(t, err, server.ErrStore)
	require.Equal(t, controller.StateRunning, l.srv.Status()[0].State)

	// The host resends (its outbox kept the events): the store works again,
	// the halt happens, is signed, and survives a restart.
	store.set(nil)
	code, ans = l.post(t, canaries[0], revert)
	require.Equal(t, http.StatusOK, code, ans)
	o = l.overview(t)
	require.Equal(t, controller.StateRolledBack, o.Rollouts[0].State)
	require.Empty(t, o.Store.LastError)
	require.Equal(t, []uint32{1002}, l.plan(t).Deny)
	l.stop()
	l.start(t, server.Options{})
	require.Equal(t, controller.StateRolledBack, l.srv.Status()[0].State)
}

// tmpfs mounts a small tmpfs on a new directory, or skips (it needs root
// and a kernel that lets this process mount).
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("ENOSPC is tested on a tmpfs: needs root on Linux")
	}
	dir := t.TempDir()
	if out, err := runMount("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, out)
	}
	t.Cleanup(func() { _, _ = runMount("umount", "-l", dir) })
	return dir
}

// fill writes a file until dir's file system is full and returns it.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	require.NoError(t, err)
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			require.ErrorContains(t, err, "no space left")
			return p
		}
	}
}

// Finding 4 (ENOSPC): a full state directory, for real: the commit fails
// with ENOSPC, nothing changes, and the halt happens once there is room.
// A full repository directory: the rollback is committed but cannot be
// signed; the API says so, and Run signs it once there is room, without a
// restart.
func TestENOSPC(t *testing.T) {
	mnt := tmpfs(t, "4m")
	state := filepath.Join(mnt, "state")
	require.NoError(t, os.MkdirAll(state, 0o700))
	l := newLabAt(t, server.Options{BatchesPerHost: 1e6, BatchBurst: 1 << 20}, state)
	canaries, _ := l.fleetOf(t, 5, 5, 1001)
	l.startRollout(t, 1002, 1001)
	tok, err := l.client().CreateToken(context.Background(), server.TokenRequest{TTL: "1h"})
	require.NoError(t, err)
	filler := fill(t, mnt)

	// New hosts enrol until a commit needs room the disk does not have:
	// that batch is refused, and nothing of it is kept.
	full := false
	for range 2000 {
		h := newHost(t, "")
		b := h.batch(1001)
		b.EnrolmentToken = tok.Token
		code, ans := l.post(t, h, b)
		if code == http.StatusServiceUnavailable {
			full = true
			break
		}
		require.Equal(t, http.StatusOK, code, ans)
	}
	require.True(t, full, "the file system never filled up")
	revert := canaries[0].batch(1001, wire.Event{Kind: wire.EventInstalled, Version: 1002},
		wire.Event{ID: "reverted-291-1002-load-crash", Kind: wire.EventReverted, Version: 1002, Reason: "load-crash", Critical: true})
	code, ans := l.post(t, canaries[0], revert)
	require.Equal(t, http.StatusServiceUnavailable, code, ans)
	o := l.overview(t)
	require.Equal(t, controller.StateRunning, o.Rollouts[0].State, "nothing changed in memory")
	require.Contains(t, o.Store.LastError, "no space left")

	require.NoError(t, os.Remove(filler))
	code, ans = l.post(t, canaries[0], revert)
	require.Equal(t, http.StatusOK, code, ans)
	require.Equal(t, controller.StateRolledBack, l.srv.Status()[0].State)
	l.stop()
	l.start(t, server.Options{})
	require.Equal(t, controller.StateRolledBack, l.srv.Status()[0].State, "the halt survived")
}

// runMount runs mount or umount.
func runMount(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// A full repository directory: the rollback commits, the signature fails,
// the API says "not yet signed", and Run signs it once there is room.
func TestSigningRetried(t *testing.T) {
	mnt := tmpfs(t, "8m")
	l := newLab(t, server.Options{})
	canaries, _ := l.fleetOf(t, 5, 5, 1001)
	l.startRollout(t, 1002, 1001)
	l.stop()
	repo := filepath.Join(mnt, "repo")
	require.NoError(t, copyTree(l.repo, repo))
	l.repo = repo
	l.start(t, server.Options{})
	filler := fill(t, mnt)

	code, ans := l.post(t, canaries[0], canaries[0].batch(1001, wire.Event{Kind: wire.EventInstalled, Version: 1002},
		wire.Event{Kind: wire.EventReverted, Version: 1002, Reason: "load-crash", Critical: true}))
	require.Equal(t, http.StatusOK, code, "the decision is committed: %s", ans)
	v := l.srv.Status()[0]
	require.Equal(t, controller.StateRolledBack, v.State)
	require.False(t, v.PlanSigned, "halted, plan not yet signed")
	require.Contains(t, v.SignError, "no space left")
	require.Contains(t, body(t, get(t, l.http.URL+"/metrics")), "ringfence_unsigned_plans 1")

	require.NoError(t, os.Remove(filler))
	_, err := l.srv.Evaluate() // what Run does every tick
	require.NoError(t, err)
	v = l.srv.Status()[0]
	require.True(t, v.PlanSigned, v.SignError)
	require.Equal(t, []uint32{1002}, l.plan(t).Deny)
}

func copyTree(from, to string) error {
	return filepath.Walk(from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if fi.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, fi.Mode().Perm())
	})
}

// Finding 5: hostile batches grew server.db by 420 MB in 200 requests and
// memory without bound (event ids kept 60 days, versions merged, 998 tags
// kept, metric series per made-up version). Now each admitted host is a
// bounded record whatever it sends, strangers are bounded pending records,
// and labels fold into "other".
func TestHostileBatchesAreBounded(t *testing.T) {
	l := newLab(t, server.Options{BatchesPerHost: 1e6, BatchBurst: 1 << 20, MaxPending: 100})
	const admitted = 20
	var hs []*host
	for range admitted {
		hs = append(hs, newHost(t, ""))
	}
	l.admit(t, hs...)
	dbSize := func() int64 {
		fi, err := os.Stat(filepath.Join(l.state, fleetdb.FileName))
		require.NoError(t, err)
		return fi.Size()
	}
	base := dbSize()

	// Worst-case batches: 500 events, each at every bound, 64 made-up
	// channels and versions each time; 10 per host.
	long := func(n int) string { return strings.Repeat("x", n) }
	sent := 0
	for round := range 10 {
		for i, h := range hs {
			evs := make([]wire.Event, 100)
			for j := range evs {
				evs[j] = wire.Event{ID: long(wire.MaxIDLen-8) + fmt.Sprint(j), Kind: wire.EventKind(long(wire.MaxKindLen)), Version: uint32(round*1000 + j),
					Reason: long(wire.MaxReasonLen), Codes: []string{long(wire.MaxCodeLen)}, Evidence: map[string]string{long(wire.MaxEvidenceKey): long(wire.MaxEvidenceVal)}}
			}
			b := h.batch(1001, evs...)
			b.Versions = map[string]uint32{}
			for c := range wire.MaxVersions {
				b.Versions[fmt.Sprint(1000+c)] = uint32(round*100000 + i*100 + c)
			}
			code, ans := l.post(t, h, b)
			require.Equal(t, http.StatusOK, code, ans)
			sent += len(b.Events)
		}
	}
	growth := dbSize() - base
	t.Logf("server.db grew %d bytes for %d admitted hosts after %d hostile events (%d bytes per host)", growth, admitted, sent, growth/admitted)
	require.Less(t, growth/admitted, int64(64<<10), "a host is a bounded record, not a log of what it sent")
	for _, h := range hs {
		v, err := l.srv.HostInfo(h.id.HostID())
		require.NoError(t, err)
		require.LessOrEqual(t, len(v.Versions), wire.MaxVersions, "a batch replaces the versions, never merges")
	}

	// Oversized fields are refused whole, before anything is stored.
	big := hs[0].batch(1001, wire.Event{Kind: wire.EventReverted, Reason: long(200 << 10)})
	code, ans := l.post(t, hs[0], big)
	require.Equal(t, http.StatusBadRequest, code, ans)
	tags := newHost(t, "")
	tb := tags.batch(1001)
	for i := range 998 {
		tb.Tags = append(tb.Tags, long(1000)+fmt.Sprint(i))
	}
	code, ans = l.post(t, tags, tb)
	require.Equal(t, http.StatusRequestEntityTooLarge, code, ans)

	// Strangers fill only the pending list, up to its bound.
	for range 300 {
		h := newHost(t, "")
		code, _ := l.post(t, h, h.batch(1001))
		require.Contains(t, []int{http.StatusForbidden, http.StatusServiceUnavailable}, code)
	}
	o := l.overview(t)
	require.Equal(t, 100, o.Pending)
	require.Equal(t, admitted, o.Hosts)

	// Metric and dashboard cardinality stay bounded: made-up versions and
	// types fold into "other".
	m := body(t, get(t, l.http.URL+"/metrics"))
	require.Less(t, strings.Count(m, "ringfence_telemetry_events_total{"), 20)
	require.Contains(t, m, `ringfence_telemetry_events_total{type="other",version="other"}`)
	l.startRollout(t, 1002, 1001)
	m = body(t, get(t, l.http.URL+"/metrics"))
	require.LessOrEqual(t, strings.Count(m, "ringfence_version_hosts{"), 16)
	require.LessOrEqual(t, len(l.srv.Status()[0].Versions), 16)
}

// TestMemoryPerHostBounded: the server's heap per admitted host, measured
// after every host sent worst-case batches, stays under a stated bound
// (docs/telemetry.md quotes the number).
func TestMemoryPerHostBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap over 2,000 hosts")
	}
	l := newLab(t, server.Options{BatchesPerHost: 1e6, BatchBurst: 1 << 20})
	const n = 2000
	var hs []*host
	for range n {
		hs = append(hs, newHost(t, ""))
	}
	l.admit(t, hs...)
	l.startRollout(t, 1002, 1001)
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	for r := range 2 {
		for _, h := range hs {
			b := h.batch(1001, wire.Event{Kind: wire.EventSensorCrashed, Version: 1001, Reason: strings.Repeat("r", wire.MaxReasonLen)})
			b.Versions = map[string]uint32{}
			for c := range wire.MaxVersions {
				b.Versions[fmt.Sprint(c+1)] = uint32(r*1000 + c)
			}
			code, ans := l.post(t, h, b)
			require.Equal(t, http.StatusOK, code, ans)
		}
	}
	per := (int64(heap()) - int64(before)) / n
	t.Logf("heap per admitted host under hostile batches: %d bytes", per)
	require.Less(t, per, int64(16<<10))
}

// Finding 6: made-up hosts filled --max-hosts and every new real host was
// refused. Now strangers fill only the bounded pending list; a real host
// with a token is admitted whatever the pending list holds.
func TestStrangersDoNotFillTheFleet(t *testing.T) {
	l := newLab(t, server.Options{MaxHosts: 10, MaxPending: 50, BatchesPerHost: 1e6, BatchBurst: 1 << 20})
	refusedFull := 0
	for range 200 {
		h := newHost(t, "")
		code, ans := l.post(t, h, h.batch(1001))
		if code == http.StatusServiceUnavailable {
			require.Contains(t, ans, "pending list is full")
			refusedFull++
			continue
		}
		require.Equal(t, http.StatusForbidden, code, ans)
	}
	require.Equal(t, 150, refusedFull)
	tok, err := l.client().CreateToken(context.Background(), server.TokenRequest{TTL: "1h", MaxUses: 10})
	require.NoError(t, err)
	real := newHost(t, "")
	b := real.batch(1001)
	b.EnrolmentToken = tok.Token
	code, ans := l.post(t, real, b)
	require.Equal(t, http.StatusOK, code, ans)
	o := l.overview(t)
	require.Equal(t, 1, o.Hosts)
	require.Equal(t, 50, o.Pending)

	// Pending keys unheard for the TTL are pruned.
	l.clock.Advance(admission.DefaultPendingTTL + time.Hour)
	_, err = l.srv.Evaluate()
	require.NoError(t, err)
	require.Equal(t, 0, l.overview(t).Pending)
}

// Finding 9: a replayed old batch moved a host back a version and
// refreshed its last-seen time. Now it is acknowledged without effect.
func TestReplayedBatchHasNoEffect(t *testing.T) {
	l := newLab(t, server.Options{BatchesPerHost: 1e6, BatchBurst: 1 << 20})
	h := newHost(t, "")
	l.admit(t, h)
	old := h.batch(1001)
	oldBody, err := json.Marshal(old)
	require.NoError(t, err)
	code, ans := l.post(t, h, old)
	require.Equal(t, http.StatusOK, code, ans)
	l.clock.Advance(time.Hour)
	code, ans = l.post(t, h, h.batch(1002, wire.Event{Kind: wire.EventInstalled, Version: 1002}))
	require.Equal(t, http.StatusOK, code, ans)
	seen, err := l.srv.HostInfo(h.id.HostID())
	require.NoError(t, err)

	l.clock.Advance(time.Hour)
	code, ans = l.postRaw(t, oldBody, wire.SignatureValue(h.id.Sign(oldBody)))
	require.Equal(t, http.StatusOK, code, "a replay is acknowledged (a resend after a lost answer looks the same): %s", ans)
	var resp wire.Response
	require.NoError(t, json.Unmarshal([]byte(ans), &resp))
	require.Equal(t, 0, resp.Applied)
	require.Equal(t, 1, resp.Stale)
	after, err := l.srv.HostInfo(h.id.HostID())
	require.NoError(t, err)
	require.Equal(t, uint32(1002), after.Versions[291], "not moved back a version")
	require.Equal(t, seen.LastSeen, after.LastSeen, "nor its last-seen time refreshed")
}

// Finding 7 at the server: a damaged server.db is an error that names the
// file and the way out, never a panic or an empty start; --start-empty
// starts empty on purpose and keeps the damaged file.
func TestDamagedStateRefusedOrStartedEmpty(t *testing.T) {
	l := newLab(t, server.Options{})
	l.fleetOf(t, 1, 1, 1001)
	l.stop()
	path := filepath.Join(l.state, fleetdb.FileName)
	require.NoError(t, os.Truncate(path, 0))
	_, err := server.New(server.Options{Repo: l.repo, Keys: l.keys, State: l.state, Clock: l.clock})
	require.ErrorIs(t, err, fleetdb.ErrDamaged)
	require.ErrorContains(t, err, path)
	require.ErrorContains(t, err, "--start-empty")
	srv, err := server.New(server.Options{Repo: l.repo, Keys: l.keys, State: l.state, Clock: l.clock, StartEmpty: true})
	require.NoError(t, err)
	defer srv.Close()
	require.Empty(t, srv.Status())
	aside, err := filepath.Glob(path + ".damaged-*")
	require.NoError(t, err)
	require.Len(t, aside, 1)
}

// The plans of a running rollout name canaries by id: a host cannot enter
// the canary group by configuring the tag.
func TestPlanNamesHostsNotTags(t *testing.T) {
	l := newLab(t, server.Options{})
	canaries, others := l.fleetOf(t, 2, 2, 1001)
	l.startRollout(t, 1002, 1001)
	p := l.plan(t)
	require.ElementsMatch(t, []string{canaries[0].id.HostID(), canaries[1].id.HostID()}, p.Stages[0].Hosts)
	require.Empty(t, p.Stages[0].Tags)
	require.NotEqual(t, 0, p.StageFor(rollout.Host{ID: others[0].id.HostID(), Tags: []string{"canary"}}))
	_, err := l.srv.SetTags(others[0].id.HostID(), server.HostRequest{ActionRequest: server.ActionRequest{Why: "joins the canaries"}, Tags: []string{"canary"}})
	require.NoError(t, err)
	require.Equal(t, 0, l.plan(t).StageFor(rollout.Host{ID: others[0].id.HostID()}), "the operator's tag re-signs the plan")
}

// Package storetest is the contract every store of ringfence-server's
// state keeps (server.Store: fleetdb's server.db, fleetpg's PostgreSQL),
// as one suite of tests that each store's tests run on it:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, storetest.Config{ErrLocked: fleetdb.ErrLocked, Create: ...})
//	}
//
// What a store promises: Load returns what was committed, across a close
// and an open of the same store; a commit is all or nothing; an upsert
// replaces the whole value; removed hosts and deleted records are gone; a
// second open of a store in use fails with the store's ErrLocked. Only
// tests import it.
package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/fleetdb"
	"github.com/ringfence/ringfence/gate"
	"github.com/ringfence/ringfence/wire"
)

// Store is what the suite uses of a store: server.Store without Backup,
// which is the store's own business.
type Store interface {
	Load() (fleetdb.State, error)
	Commit(controller.Changes, admission.Changes) error
	Close() error
}

// Open opens the store that Create made. It may be called again, after
// Close, to open the same store once more. wait is how long it waits for
// another holder to let go before it fails with the store's ErrLocked
// (the store's Options.Timeout).
type Open func(wait time.Duration) (Store, error)

// Config is the store under test.
type Config struct {
	// Create makes a new, empty store for t and returns how to open it;
	// what it makes is removed when t ends.
	Create func(t *testing.T) Open
	// ErrLocked is what a second Open returns while the store is open.
	ErrLocked error
}

// wait is the lock wait of the suite's ordinary opens.
const wait = 5 * time.Second

// Run runs the suite, each case as a subtest on a store of its own.
func Run(t *testing.T, c Config) {
	if c.Create == nil || c.ErrLocked == nil {
		t.Fatal("storetest: Config needs Create and ErrLocked")
	}
	cases := []struct {
		name string
		fn   func(t *testing.T, c Config, open Open)
	}{
		{"EmptyLoad", testEmptyLoad},
		{"RoundTrip", testRoundTrip},
		{"RemoveAndDelete", testRemoveAndDelete},
		{"UpsertReplaces", testUpsertReplaces},
		{"EmptyCommit", testEmptyCommit},
		{"LargeCommit", testLargeCommit},
		{"SecondOpenLocked", testSecondOpenLocked},
		{"AllOrNothing", testAllOrNothing},
		{"ZeroCharacter", testZeroCharacter},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, c, c.Create(t)) })
	}
}

// mustOpen opens the store and closes it when t ends (unless the test
// did); reopen closes s and opens the store again.
func mustOpen(t *testing.T, open Open) Store {
	t.Helper()
	s, err := open(wait)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	cs := &closeOnce{Store: s}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

type closeOnce struct {
	Store
	closed bool
}

func (c *closeOnce) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	return c.Store.Close()
}

func reopen(t *testing.T, s Store, open Open) Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return mustOpen(t, open)
}

func commit(t *testing.T, s Store, cc controller.Changes, rc admission.Changes) {
	t.Helper()
	if err := s.Commit(cc, rc); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func load(t *testing.T, s Store) fleetdb.State {
	t.Helper()
	st, err := s.Load()
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return st
}

// The fixtures: every field that JSON carries, with values that test the
// encoding (the largest uint64, floats at the ends of their range, times
// with nanoseconds, text that JSON escapes).
var now = time.Date(2026, 12, 1, 10, 0, 0, 123456789, time.UTC)

func host(id string) *controller.Host {
	return &controller.Host{
		ID: id, Bucket: 17, Fleet: "acme", Tags: []string{"canary", "<eu>&\"west\"\\"},
		Versions: map[uint32]uint32{291: 1001, 4294967295: 7},
		Tracks:   []controller.Track{{Channel: 291, To: 1002, Installed: now, Healthy: now.Add(time.Minute)}},
		LastSeen: now, Admitted: now.Add(-time.Hour), AdmittedBy: "token:t1",
		LastSeq: math.MaxUint64, Sensor: "ref-1.2", Manifest: "sha256:ab",
	}
}

func rollout(ch uint32) *controller.Rollout {
	return &controller.Rollout{
		Spec: controller.Spec{Channel: ch, To: 1002, From: 1001, Schedule: "default",
			Stages:       []controller.StageSpec{{Name: "canary", Percent: 0.1, Tags: []string{"canary"}, Bake: time.Hour, MinHosts: 3}, {Name: "all", Percent: 100}},
			HealthWindow: 10 * time.Minute, Grace: time.Minute, Silence: time.Hour},
		State: controller.StateRunning, Stage: 1, Started: now, StageStarted: now.Add(time.Minute), Updated: now.Add(2 * time.Minute),
		Deny:      []uint32{999, 4294967295},
		Counts:    controller.Counts{Treated: 10, Control: 90, TreatedFailures: 1},
		GateState: gate.State{LogLR: []float64{-0.5, 1e-300, 12345.678901234567, 5e-324, math.MaxFloat64}, Treated: 1, Control: 3},
		Result:    gate.Result{Statistic: 0.30102999566398114, Threshold: 1.3010299956639813},
		History:   []controller.Point{{Time: now, Statistic: 0.25, Threshold: 1.3, Stage: 1}},
		Decisions: []controller.Decision{{Seq: 1, Time: now, Kind: controller.KindStart, Actor: "alice", Reason: "weekly content: ünïcode ✓"}},
		Seq:       1,
	}
}

func record(id string) *admission.Record {
	return &admission.Record{ID: id, State: wire.AdmissionPending, Requested: []string{"canary"}, FirstSeen: now, LastSeen: now.Add(time.Second), Note: "no token"}
}

func token(id string) *admission.Token {
	return &admission.Token{ID: id, Hash: strings.Repeat("ab", 32), Fleet: "acme", Tags: []string{"canary"}, Created: now,
		CreatedBy: "alice", Expires: now.Add(time.Hour), MaxUses: 5, Uses: 2}
}

// canonical is st as sorted JSON, to compare states: equal JSON is equal
// values (the times included: same instant, same zone).
func canonical(t *testing.T, st fleetdb.State) string {
	t.Helper()
	st.Hosts = slices.SortedFunc(slices.Values(st.Hosts), func(a, b *controller.Host) int { return strings.Compare(a.ID, b.ID) })
	st.Rollouts = slices.SortedFunc(slices.Values(st.Rollouts), func(a, b *controller.Rollout) int { return int(a.Channel) - int(b.Channel) })
	st.Records = slices.SortedFunc(slices.Values(st.Records), func(a, b *admission.Record) int { return strings.Compare(a.ID, b.ID) })
	st.Tokens = slices.SortedFunc(slices.Values(st.Tokens), func(a, b *admission.Token) int { return strings.Compare(a.ID, b.ID) })
	b, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func requireState(t *testing.T, want, got fleetdb.State) {
	t.Helper()
	if w, g := canonical(t, want), canonical(t, got); w != g {
		t.Fatalf("loaded state differs from the committed one\nwant: %s\ngot:  %s", w, g)
	}
}

func ids(st fleetdb.State) (hosts, records []string) {
	for _, h := range st.Hosts {
		hosts = append(hosts, h.ID)
	}
	for _, r := range st.Records {
		records = append(records, r.ID)
	}
	slices.Sort(hosts)
	slices.Sort(records)
	return hosts, records
}

func testEmptyLoad(t *testing.T, _ Config, open Open) {
	s := mustOpen(t, open)
	st := load(t, s)
	if len(st.Hosts)+len(st.Rollouts)+len(st.Records)+len(st.Tokens) != 0 {
		t.Fatalf("a new store loads %+v, want nothing", st)
	}
	s = reopen(t, s, open)
	requireState(t, fleetdb.State{}, load(t, s))
}

func testRoundTrip(t *testing.T, _ Config, open Open) {
	s := mustOpen(t, open)
	want := fleetdb.State{
		Hosts:    []*controller.Host{host("h-1"), host("h-2")},
		Rollouts: []*controller.Rollout{rollout(291), rollout(4294967295)},
		Records:  []*admission.Record{record("h-3")},
		Tokens:   []*admission.Token{token("t1"), token("t2")},
	}
	commit(t, s, controller.Changes{Hosts: want.Hosts[:1], Rollouts: want.Rollouts, Plans: []uint32{291}},
		admission.Changes{Records: want.Records, Tokens: want.Tokens[:1]})
	commit(t, s, controller.Changes{Hosts: want.Hosts[1:]}, admission.Changes{Tokens: want.Tokens[1:]})
	requireState(t, want, load(t, s))

	s = reopen(t, s, open)
	got := load(t, s)
	requireState(t, want, got)
	// The fields the server relies on across a restart, spelled out.
	h := got.Hosts[slices.IndexFunc(got.Hosts, func(h *controller.Host) bool { return h.ID == "h-1" })]
	if h.LastSeq != math.MaxUint64 {
		t.Errorf("LastSeq %d: the replay guard must survive a restart", h.LastSeq)
	}
	if !h.LastSeen.Equal(now) || !h.Tracks[0].Healthy.Equal(now.Add(time.Minute)) {
		t.Errorf("times: last seen %v, healthy %v; want %v and a minute later", h.LastSeen, h.Tracks[0].Healthy, now)
	}
	r := got.Rollouts[slices.IndexFunc(got.Rollouts, func(r *controller.Rollout) bool { return r.Channel == 291 })]
	if r.State != controller.StateRunning || !slices.Equal(r.Deny, []uint32{999, 4294967295}) || !r.StageStarted.Equal(now.Add(time.Minute)) {
		t.Errorf("rollout 291: state %v, deny %v, stage started %v", r.State, r.Deny, r.StageStarted)
	}
	if !slices.Equal(r.GateState.LogLR, rollout(291).GateState.LogLR) {
		t.Errorf("gate state %v: floats must round-trip exactly", r.GateState.LogLR)
	}
}

func testRemoveAndDelete(t *testing.T, _ Config, open Open) {
	s := mustOpen(t, open)
	commit(t, s, controller.Changes{Hosts: []*controller.Host{host("h-1"), host("h-2"), host("h-3")}},
		admission.Changes{Records: []*admission.Record{record("h-4"), record("h-5")}})
	// h-3 is upserted and removed in one commit: removed wins, as the
	// controller means it; h-9 and h-8 were never stored.
	commit(t, s, controller.Changes{Hosts: []*controller.Host{host("h-3")}, Removed: []string{"h-2", "h-3", "h-9"}},
		admission.Changes{Records: []*admission.Record{record("h-5")}, DeletedRecords: []string{"h-5", "h-8"}})
	check := func(s Store) {
		t.Helper()
		hosts, records := ids(load(t, s))
		if !slices.Equal(hosts, []string{"h-1"}) || !slices.Equal(records, []string{"h-4"}) {
			t.Fatalf("hosts %v, records %v; want [h-1] and [h-4]: removed hosts and deleted records are gone", hosts, records)
		}
	}
	check(s)
	check(reopen(t, s, open))
}

func testUpsertReplaces(t *testing.T, _ Config, open Open) {
	s := mustOpen(t, open)
	commit(t, s, controller.Changes{Hosts: []*controller.Host{host("h-1")}, Rollouts: []*controller.Rollout{rollout(291)}},
		admission.Changes{Records: []*admission.Record{record("h-2")}, Tokens: []*admission.Token{token("t1")}})
	// The new values leave fields out (omitempty): nothing of the old
	// value may survive in them, and the last of two values for one key
	// wins.
	h := &controller.Host{ID: "h-1", Bucket: 3, Admitted: now}
	r := &controller.Rollout{Spec: controller.Spec{Channel: 291, To: 1003}, State: controller.StateHalted}
	rec := &admission.Record{ID: "h-2", State: wire.AdmissionRejected, DecidedBy: "bob"}
	tok := &admission.Token{ID: "t1", Hash: "cd", Revoked: now}
	commit(t, s, controller.Changes{Hosts: []*controller.Host{host("h-1"), h}, Rollouts: []*controller.Rollout{r}},
		admission.Changes{Records: []*admission.Record{rec}, Tokens: []*admission.Token{tok}})
	want := fleetdb.State{Hosts: []*controller.Host{h}, Rollouts: []*controller.Rollout{r}, Records: []*admission.Record{rec}, Tokens: []*admission.Token{tok}}
	requireState(t, want, load(t, s))
	requireState(t, want, load(t, reopen(t, s, open)))
}

func testEmptyCommit(t *testing.T, _ Config, open Open) {
	s := mustOpen(t, open)
	commit(t, s, controller.Changes{}, admission.Changes{})
	commit(t, s, controller.Changes{Hosts: []*controller.Host{host("h-1")}}, admission.Changes{})
	commit(t, s, controller.Changes{Plans: []uint32{291}}, admission.Changes{})
	commit(t, s, controller.Changes{}, admission.Changes{})
	requireState(t, fleetdb.State{Hosts: []*controller.Host{host("h-1")}}, load(t, reopen(t, s, open)))
}

// largeCommit is how many hosts one commit holds in LargeCommit: a fleet
// admitted at once, or a schema migration's worth.
const largeCommit = 5000

func testLargeCommit(t *testing.T, _ Config, open Open) {
	s := mustOpen(t, open)
	var want fleetdb.State
	for i := range largeCommit {
		h := host(fmt.Sprintf("h-%05d", i))
		h.Bucket = i % 100
		want.Hosts = append(want.Hosts, h)
	}
	commit(t, s, controller.Changes{Hosts: want.Hosts}, admission.Changes{})
	got := load(t, reopen(t, s, open))
	if len(got.Hosts) != largeCommit {
		t.Fatalf("loaded %d hosts, want %d", len(got.Hosts), largeCommit)
	}
	requireState(t, want, got)
}

func testSecondOpenLocked(t *testing.T, c Config, open Open) {
	s := mustOpen(t, open)
	commit(t, s, controller.Changes{Hosts: []*controller.Host{host("h-1")}}, admission.Changes{})
	second, err := open(50 * time.Millisecond)
	if err == nil {
		_ = second.Close()
		t.Fatal("a second open of a store in use succeeded; want the store's ErrLocked")
	}
	if !errors.Is(err, c.ErrLocked) {
		t.Fatalf("a second open of a store in use: %v; want the store's ErrLocked (%v)", err, c.ErrLocked)
	}
	// The first is unharmed, and once it is closed the store opens.
	commit(t, s, controller.Changes{Hosts: []*controller.Host{host("h-2")}}, admission.Changes{})
	hosts, _ := ids(load(t, reopen(t, s, open)))
	if !slices.Equal(hosts, []string{"h-1", "h-2"}) {
		t.Fatalf("hosts %v, want [h-1 h-2]", hosts)
	}
}

func testAllOrNothing(t *testing.T, _ Config, open Open) {
	s := mustOpen(t, open)
	before := fleetdb.State{Hosts: []*controller.Host{host("h-0")}}
	commit(t, s, controller.Changes{Hosts: before.Hosts}, admission.Changes{})
	// A time past year 9999 does not encode (encoding/json refuses it):
	// the commit fails after some of its values were written, and none
	// of them may stay.
	bad := host("h-bad")
	bad.LastSeen = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	changed := host("h-0")
	changed.Bucket = 99
	err := s.Commit(controller.Changes{Hosts: []*controller.Host{changed, host("h-1"), bad}, Rollouts: []*controller.Rollout{rollout(291)}, Removed: []string{"h-0"}},
		admission.Changes{Records: []*admission.Record{record("h-2")}, Tokens: []*admission.Token{token("t1")}})
	if err == nil {
		t.Fatal("a commit holding a value that does not encode succeeded")
	}
	requireState(t, before, load(t, s))
	// The store still commits.
	commit(t, s, controller.Changes{Hosts: []*controller.Host{host("h-1")}}, admission.Changes{})
	before.Hosts = append(before.Hosts, host("h-1"))
	requireState(t, before, load(t, reopen(t, s, open)))
}

// testZeroCharacter: a host may put U+0000 in a requested tag (only its
// length is bounded). The commit must succeed, and the character loads
// back as itself or as U+FFFD (PostgreSQL's jsonb cannot hold it).
func testZeroCharacter(t *testing.T, _ Config, open Open) {
	s := mustOpen(t, open)
	rec := record("h-1")
	rec.Requested = []string{"a\x00b", `\u0000`}
	rec.Note = "\x00"
	commit(t, s, controller.Changes{}, admission.Changes{Records: []*admission.Record{rec}})
	got := load(t, reopen(t, s, open))
	if len(got.Records) != 1 {
		t.Fatalf("loaded %d records, want 1", len(got.Records))
	}
	r := got.Records[0]
	zero := func(got, want string) bool {
		return got == want || got == strings.ReplaceAll(want, "\x00", "\uFFFD")
	}
	if len(r.Requested) != 2 || !zero(r.Requested[0], "a\x00b") || r.Requested[1] != `\u0000` || !zero(r.Note, "\x00") {
		t.Fatalf("requested %q, note %q; want [\"a\\x00b\" `\\u0000`] and \"\\x00\" (U+0000 may come back as U+FFFD, the text \\u0000 as itself)", r.Requested, r.Note)
	}
}

package daemon_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/testbin"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/telemetry"
	"github.com/ringfence/ringfence/tufrepo"
	"github.com/ringfence/ringfence/validator"
	"github.com/ringfence/ringfence/wire"
)

// buildRingfenced builds the real daemon binary (once per test process;
// the tests share it): the agent and the preflight harness the daemons run
// are its subcommands.
func buildRingfenced(t testing.TB) string {
	t.Helper()
	return testbin.Exe(testbin.Build(t, "../cmd/ringfenced"), "../cmd/ringfenced")
}

// lab is a TUF repository and a telemetry collector served on loopback.
type lab struct {
	repo *tufrepo.Repo
	srv  *httptest.Server
	root []byte

	telemetry *httptest.Server
	mu        sync.Mutex
	events    map[string][]wire.Event    // by host id, deduplicated by event id
	infos     map[string][]wire.HostInfo // by host id, what each batch said of the host
	seen      map[string]bool
	got       chan struct{} // a batch arrived
}

// collect is the telemetry endpoint: it verifies each batch as the server
// will (signature, host id from the key) and stores events once per id.
func (l *lab) collect(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, wire.MaxBody+1))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b, err := wire.VerifyBatch(body, r.Header.Get(wire.SignatureHeader))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	l.mu.Lock()
	l.infos[b.HostID] = append(l.infos[b.HostID], b.HostInfo)
	var ids []string
	for _, e := range b.Events {
		if !l.seen[b.HostID+e.ID] {
			l.seen[b.HostID+e.ID] = true
			l.events[b.HostID] = append(l.events[b.HostID], e)
		}
		ids = append(ids, e.ID)
	}
	l.mu.Unlock()
	_ = json.NewEncoder(w).Encode(wire.Response{Accepted: ids, Admission: wire.AdmissionAccepted})
	select {
	case l.got <- struct{}{}:
	default:
	}
}

// reported reports whether host sent an event of type typ for version v.
func (l *lab) reported(host string, kind wire.EventKind, v uint32) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events[host] {
		if e.Kind == kind && e.Version == v {
			return true
		}
	}
	return false
}

func newLab(t testing.TB, clk *clock.Fake) *lab {
	t.Helper()
	dir := t.TempDir()
	repo, err := tufrepo.Init(dir, t.TempDir(), tufrepo.InitOptions{Clock: clk})
	require.NoError(t, err)
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	root, err := repo.RootJSON()
	require.NoError(t, err)
	l := &lab{repo: repo, srv: srv, root: root, events: map[string][]wire.Event{}, infos: map[string][]wire.HostInfo{}, seen: map[string]bool{}, got: make(chan struct{}, 1)}
	l.telemetry = httptest.NewServer(http.HandlerFunc(l.collect))
	t.Cleanup(l.telemetry.Close)
	return l
}

// roll publishes name (a testdata channel file) and sends every host to it.
func (l *lab) roll(t testing.TB, name string) uint32 {
	t.Helper()
	data := testfiles.Channel(t, name)
	f, err := validator.Parse(data)
	require.NoError(t, err)
	v := f.ContentVersion
	_, err = l.repo.Publish(291, v, data)
	require.NoError(t, err)
	plan := fmt.Sprintf(`{"format":%q,"channel":291,"stages":[{"name":"all","percent":100,"version":%d}]}`, rollout.Format, v)
	require.NoError(t, l.repo.SetRollout(291, []byte(plan)))
	return v
}

// host is one daemon with its own root, agent and status stream.
type host struct {
	id     string
	root   string
	d      *daemon.Daemon
	status chan daemon.Status
	last   daemon.Status
	done   chan error
}

// waitFor reads the host's statuses until ok says yes; the deadline is a
// bound on a broken test, not a wait.
func (h *host) waitFor(t testing.TB, what string, ok func(daemon.Status) bool) {
	t.Helper()
	if ok(h.last) {
		return
	}
	deadline := time.After(60 * time.Second)
	for {
		select {
		case s := <-h.status:
			h.last = s
			if ok(s) {
				return
			}
		case err := <-h.done:
			t.Fatalf("%s: daemon stopped (%v) waiting for %s", h.id, err, what)
		case <-deadline:
			t.Fatalf("%s: no status with %s; last: %+v", h.id, what, h.last)
		}
	}
}

func running(s string) func(daemon.Status) bool {
	return func(st daemon.Status) bool { return st.Agent == daemon.AgentRunning && st.Running == s }
}

func startHost(t testing.TB, ctx context.Context, l *lab, clk *clock.Fake, bin string, i int, adjust ...func(*daemon.Options)) *host {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	require.NoError(t, os.MkdirAll(root, 0o700))
	trusted := filepath.Join(t.TempDir(), "root.json")
	require.NoError(t, os.WriteFile(trusted, l.root, 0o600))
	caps := filepath.Join(testfiles.Dir(), "capabilities")
	cfg := hostconfig.Default()
	cfg.Root, cfg.Repository, cfg.TrustedRoot, cfg.Channel = root, l.srv.URL, trusted, 291
	cfg.PollInterval = hostconfig.Duration{Duration: 1000 * time.Hour} // the test polls
	cfg.PollJitter = hostconfig.Duration{}
	cfg.Telemetry.Interval = hostconfig.Duration{Duration: 1000 * time.Hour}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	id := telemetry.NewIdentity(key)
	cfg.Telemetry.Endpoint = l.telemetry.URL
	h := &host{id: id.HostID(), root: root, status: make(chan daemon.Status, 1000), done: make(chan error, 1)}
	opts := daemon.Options{
		Config: cfg,
		HostID: h.id,
		// The installed interpreter is believed to be 7.12 (21 IPC fields)
		// by validation and preflight, but the agent runs 7.11 (20): what
		// passes both checks can still crash the agent on load.
		Capabilities:     testfiles.Capabilities(t, "7.12"),
		AgentCommand:     []string{bin, "agent", "--capabilities", filepath.Join(caps, "sensor-7.11.json"), "--alive-interval", "1h"},
		PreflightCommand: []string{bin, "sensor", "preflight", "--capabilities", filepath.Join(caps, "sensor-7.12.json")},
		TrustedRoot:      l.root,
		Clock:            clk,
		Log:              testLogger(t, h.id),
		Sender:           &telemetry.Sender{Endpoint: l.telemetry.URL, Identity: id, Clock: clk},
		Observe: func(s daemon.Status) {
			select {
			case h.status <- s:
			default:
			}
		},
	}
	for _, f := range adjust {
		f(&opts)
	}
	d, err := daemon.New(opts)
	require.NoError(t, err)
	h.d = d
	go func() { h.done <- d.Run(ctx) }()
	return h
}

// testLogger sends a daemon's log to the test's, so it shows when a test
// fails; benchmarks keep quiet.
func testLogger(t testing.TB, id string) *slog.Logger {
	if _, ok := t.(*testing.B); ok {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(tlog{t, id}, nil))
}

// tlog sends a daemon's log to the test's, so it shows when a test fails.
type tlog struct {
	t  testing.TB
	id string
}

func (w tlog) Write(p []byte) (int, error) {
	w.t.Logf("%s: %s", w.id, strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestEndToEnd: three hosts, three daemons, one repository. A good version
// is installed and marked good everywhere; then a version that crashes the
// sensor on load: every host reverts to the good version by itself,
// quarantines the bad one, reports it, and never retries it.
func TestEndToEnd(t *testing.T) {
	bin := buildRingfenced(t)
	clk := clock.NewFake(time.Now())
	l := newLab(t, clk)
	good := l.roll(t, "good-ipc-1001")

	ctx, cancel := context.WithCancel(context.Background())
	var hosts []*host
	for i := range 3 {
		hosts = append(hosts, startHost(t, ctx, l, clk, bin, i))
	}
	defer func() {
		cancel()
		for _, h := range hosts {
			require.NoError(t, <-h.done)
		}
	}()

	trialOf := func(v uint32) string { return fmt.Sprintf("channel 291 version %d (TRIAL)", v) }
	goodOf := func(v uint32) string { return fmt.Sprintf("channel 291 version %d (GOOD)", v) }

	for _, h := range hosts {
		h.waitFor(t, "the agent running", func(s daemon.Status) bool { return s.Agent == daemon.AgentRunning })
		_, err := h.d.Poll(ctx)
		require.NoError(t, err)
		h.waitFor(t, "the trial of "+fmt.Sprint(good), running(trialOf(good)))
	}
	clk.Advance(hostconfig.Default().HealthWindow.Duration)
	for _, h := range hosts {
		h.waitFor(t, "good marked good", running(goodOf(good)))
	}

	bad := l.roll(t, "cf291-shape")
	for _, h := range hosts {
		r, err := h.d.Poll(ctx)
		require.NoError(t, err)
		require.Equal(t, daemon.ActionInstalled, r.Action, "%s: %+v", h.id, r)
		require.Equal(t, bad, r.Version)
		h.waitFor(t, "the agent's crash", func(s daemon.Status) bool { return s.Agent == daemon.AgentRestarting })
		require.Contains(t, h.last.LastCrash, "index out of range")
	}
	clk.Advance(hostconfig.Default().Agent.RestartDelay.Duration)
	for _, h := range hosts {
		h.waitFor(t, "last-known-good running again", running(goodOf(good)))
		r, err := h.d.Poll(ctx)
		require.NoError(t, err)
		require.Equal(t, daemon.ActionSkipped, r.Action, "%s must never retry %d: %+v", h.id, bad, r)
		require.Contains(t, r.Why, "quarantined")
	}

	// Every host reports the revert and the quarantine upstream, signed.
	clk.Advance(1000 * time.Hour) // the telemetry interval
	deadline := time.After(60 * time.Second)
	for _, h := range hosts {
		for !(l.reported(h.id, wire.EventReverted, bad) && l.reported(h.id, wire.EventQuarantined, bad) &&
			l.reported(h.id, wire.EventHealthy, good) && l.reported(h.id, wire.EventInstalled, bad)) {
			select {
			case <-l.got:
			case <-deadline:
				t.Fatalf("%s did not report the revert of %d; got %+v", h.id, bad, l.events[h.id])
			}
		}
	}

	cancel()
	for _, h := range hosts {
		require.NoError(t, <-h.done)
	}
	hosts = nil
}

// TestSelfUpdate: the daemon takes the newest agent binary for its
// platform that is newer than it and never failed here, hands the
// TUF-verified file and checksum to Apply, and stops with ErrRestart.
func TestSelfUpdate(t *testing.T) {
	bin := buildRingfenced(t)
	clk := clock.NewFake(time.Now())
	l := newLab(t, clk)
	l.roll(t, "good-ipc-1001")
	for _, a := range []struct{ os, arch, v string }{
		{"linux", "amd64", "1.2"}, {"linux", "amd64", "1.10"}, {"linux", "amd64", "2.0"}, {"windows", "amd64", "9.0"}, {"linux", "arm64", "9.0"},
	} {
		_, err := l.repo.PublishBinary(a.os, a.arch, a.v, []byte("binary "+a.os+a.arch+a.v))
		require.NoError(t, err)
	}
	type applied struct {
		data    []byte
		sum     [32]byte
		version string
	}
	got := make(chan applied, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startHost(t, ctx, l, clk, bin, 0, func(o *daemon.Options) {
		o.Binary = &daemon.BinaryUpdate{
			Version: "1.9", Platform: "linux-amd64",
			Failed: func() []string { return []string{"2.0"} },
			Apply: func(path string, sum [32]byte, v string) error {
				b, err := os.ReadFile(path)
				got <- applied{b, sum, v}
				return err
			},
		}
	})
	// The first poll runs by itself once the agent is up.
	h.waitFor(t, "the self-update", func(s daemon.Status) bool { return s.Poll.Action == daemon.ActionSelfUpdated })
	a := <-got
	require.Equal(t, "1.10", a.version, "newer than 1.9, not failed here, this platform")
	require.Equal(t, []byte("binary linuxamd641.10"), a.data)
	require.Equal(t, sha256.Sum256(a.data), a.sum)
	require.ErrorIs(t, <-h.done, daemon.ErrRestart)
}

// TestSelfUpdateFailureDoesNotHoldContent: a ringfenced binary that cannot
// be put in place (a packaged host, whose /usr/bin the unit makes
// read-only) is reported and not tried again this run, and the content the
// plan gives is installed in the same poll all the same.
func TestSelfUpdateFailureDoesNotHoldContent(t *testing.T) {
	bin := buildRingfenced(t)
	clk := clock.NewFake(time.Now())
	l := newLab(t, clk)
	good := l.roll(t, "good-ipc-1001")
	_, err := l.repo.PublishBinary("linux", "amd64", "2.0", []byte("a newer ringfenced"))
	require.NoError(t, err)
	var applies atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	h := startHost(t, ctx, l, clk, bin, 0, func(o *daemon.Options) {
		o.Binary = &daemon.BinaryUpdate{
			Version: "1.9", Platform: "linux-amd64",
			Apply: func(string, [32]byte, string) error {
				applies.Add(1)
				return errors.New("rename /usr/bin/ringfenced: read-only file system")
			},
		}
	})
	defer func() { cancel(); require.NoError(t, <-h.done) }()
	// The first poll runs by itself once the agent is up.
	h.waitFor(t, "the first poll", func(s daemon.Status) bool { return s.Poll.Action != "" })
	r := h.last.Poll
	require.Equal(t, daemon.ActionInstalled, r.Action, "the content is installed although the self-update failed: %+v", r)
	require.Equal(t, good, r.Version)
	require.Len(t, r.Channels, 2, "%+v", r)
	require.Equal(t, daemon.ActionFailed, r.Channels[0].Action)
	require.Contains(t, r.Channels[0].Why, "self-update to 2.0: rename /usr/bin/ringfenced: read-only file system (not tried again until ringfenced restarts)")
	h.waitFor(t, "the trial", running(fmt.Sprintf("channel 291 version %d (TRIAL)", good)))

	r, err = h.d.Poll(ctx)
	require.NoError(t, err)
	require.NotEqual(t, daemon.ActionFailed, r.Action, "%+v", r)
	require.Equal(t, int32(1), applies.Load(), "a binary Apply refused is not downloaded and refused again at every poll")
}

// onGood starts one host on a lab whose plan gives it testdata channel
// file name, and returns once that version runs GOOD; stop ends the daemon
// (once) and checks that it stopped cleanly.
func onGood(t *testing.T, name string) (l *lab, h *host, v uint32, ctx context.Context, stop func()) {
	t.Helper()
	bin := buildRingfenced(t)
	clk := clock.NewFake(time.Now())
	l = newLab(t, clk)
	v = l.roll(t, name)
	ctx, cancel := context.WithCancel(context.Background())
	h = startHost(t, ctx, l, clk, bin, 0)
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); require.NoError(t, <-h.done) }) }
	t.Cleanup(stop)
	h.waitFor(t, "the agent running", func(s daemon.Status) bool { return s.Agent == daemon.AgentRunning })
	_, err := h.d.Poll(ctx)
	require.NoError(t, err)
	h.waitFor(t, "the trial", running(fmt.Sprintf("channel 291 version %d (TRIAL)", v)))
	clk.Advance(hostconfig.Default().HealthWindow.Duration)
	h.waitFor(t, "the version marked good", running(fmt.Sprintf("channel 291 version %d (GOOD)", v)))
	return l, h, v, ctx, stop
}

// TestFirstRolloutRolledBackToNoContent: a host that took a channel's
// first content, marked good, reads a signed plan that gives nobody content
// and denies that version (a first rollout, rolled back): it goes back to
// no content, reports the revert, and does not take the version again.
func TestFirstRolloutRolledBackToNoContent(t *testing.T) {
	l, h, first, ctx, _ := onGood(t, "good-ipc-1001")
	require.NoError(t, l.repo.SetRollout(291, fmt.Appendf(nil, `{"format":%q,"channel":291,"stages":[],"deny":[%d]}`, rollout.Format, first)))
	r, err := h.d.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, daemon.ActionReverted, r.Action, "%+v", r)
	h.waitFor(t, "no content", running("no content"))
	r, err = h.d.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, daemon.ActionNothing, r.Action)
	require.Contains(t, r.Why, "gives no host content")
}

// TestJournal: the daemon's journal holds the events it queued, in order,
// as the outbox stored them (ids, rising seqs): what a tool on the host
// reads instead of the log.
func TestJournal(t *testing.T) {
	_, h, _, _, stop := onGood(t, "good-ipc-1001")
	stop()
	evs, err := daemon.ReadJournal(h.root)
	require.NoError(t, err)
	var kinds []wire.EventKind
	var last uint64
	for _, e := range evs {
		require.Greater(t, e.Seq, last)
		require.NotEmpty(t, e.ID)
		last = e.Seq
		if e.Kind != wire.EventHeartbeat {
			kinds = append(kinds, e.Kind)
		}
	}
	require.Equal(t, []wire.EventKind{wire.EventInstalled, wire.EventTrialStarted, wire.EventHealthy}, kinds)
}

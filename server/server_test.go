package server_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/telemetry"
	"github.com/ringfence/ringfence/tuf"
	"github.com/ringfence/ringfence/tufrepo"
	"github.com/ringfence/ringfence/validator"
	"github.com/ringfence/ringfence/wire"
)

// lab is a repository with versions 1001 and 1002 of channel 291 published
// and a server over it on loopback.
type lab struct {
	repo, keys, state string
	clock             *clock.Fake // the server's time; tests move it
	srv               *server.Server
	http              *httptest.Server
	root              []byte
}

func newLab(t testing.TB, opts server.Options) *lab {
	t.Helper()
	return newLabAt(t, opts, testtmp.Dir(t))
}

// newLabAt is newLab with the server's state directory at state.
func newLabAt(t testing.TB, opts server.Options, state string) *lab {
	t.Helper()
	l := &lab{repo: testtmp.Dir(t), keys: testtmp.Dir(t), state: state, clock: clock.NewFake(time.Now().UTC())}
	r, err := tufrepo.Init(l.repo, l.keys, tufrepo.InitOptions{Clock: l.clock})
	require.NoError(t, err)
	for _, name := range []string{"good-ipc-1001", "good-ipc-1002"} {
		data := testfiles.Channel(t, name)
		f, err := validator.Parse(data)
		require.NoError(t, err)
		_, err = r.Publish(291, f.ContentVersion, data)
		require.NoError(t, err)
	}
	l.root, err = r.RootJSON()
	require.NoError(t, err)
	l.start(t, opts)
	return l
}

func (l *lab) start(t testing.TB, opts server.Options) {
	t.Helper()
	opts.Repo, opts.Keys, opts.State, opts.Clock = l.repo, l.keys, l.state, l.clock
	srv, err := server.New(opts)
	require.NoError(t, err)
	l.srv = srv
	l.http = httptest.NewServer(srv.Handler())
	t.Cleanup(l.stop)
}

func (l *lab) stop() {
	if l.srv != nil {
		l.http.Close()
		l.srv.Close()
		l.srv = nil
	}
}

func (l *lab) client() *server.Client { return &server.Client{URL: l.http.URL, Token: l.srv.Token()} }

// host is a telemetry sender with its own key; tag is the tag the server
// gives it when admit admits it.
type host struct {
	id  *telemetry.Identity
	tag string
	seq uint64
}

func newHost(t testing.TB, tag string) *host {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return &host{id: telemetry.NewIdentity(k), tag: tag}
}

// admit accepts h into the fleet (with its tag) through the operator's path.
func (l *lab) admit(t testing.TB, hs ...*host) {
	t.Helper()
	for _, h := range hs {
		var tags []string
		if h.tag != "" {
			tags = []string{h.tag}
		}
		_, err := l.srv.Accept(h.id.HostID(), server.HostRequest{ActionRequest: server.ActionRequest{Who: "test", Why: "test fleet"}, Tags: tags})
		require.NoError(t, err)
	}
}

// batch is a signed batch's content: a heartbeat, then evs, each with the
// host's next seq (and an id unless given).
func (h *host) batch(running uint32, evs ...wire.Event) wire.Batch {
	evs = append([]wire.Event{{Kind: wire.EventHeartbeat, Version: running}}, evs...)
	for i := range evs {
		h.seq++
		evs[i].Seq = h.seq
		if evs[i].ID == "" {
			evs[i].ID = fmt.Sprintf("e%d", h.seq)
		}
		evs[i].Channel = 291
	}
	b := wire.Batch{Format: wire.Format, HostID: h.id.HostID(), PublicKey: base64.StdEncoding.EncodeToString(h.id.PublicKey()),
		SentAt: time.Now().UTC(), HostInfo: wire.HostInfo{Versions: map[string]uint32{"291": running}}, Events: evs}
	if h.tag != "" {
		b.Tags = []string{h.tag}
	}
	return b
}

// post sends a signed batch and returns the status and the answer.
func (l *lab) post(t *testing.T, h *host, b wire.Batch) (int, string) {
	t.Helper()
	body, err := json.Marshal(b)
	require.NoError(t, err)
	return l.postRaw(t, body, wire.SignatureValue(h.id.Sign(body)))
}

func (l *lab) postRaw(t *testing.T, body []byte, sig string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, l.http.URL+wire.Path, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set(wire.SignatureHeader, sig)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func get(t *testing.T, url string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func body(t *testing.T, resp *http.Response) string {
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func TestStaticRepository(t *testing.T) {
	l := newLab(t, server.Options{})
	ts := get(t, l.http.URL+"/metadata/timestamp.json")
	require.Equal(t, http.StatusOK, ts.StatusCode)
	tag := ts.Header.Get("ETag")
	require.NotEmpty(t, tag)
	require.Equal(t, "no-cache", ts.Header.Get("Cache-Control"), "timestamp.json is revalidated every time")
	require.Contains(t, body(t, ts), `"_type": "timestamp"`)

	again := get(t, l.http.URL+"/metadata/timestamp.json", "If-None-Match", tag)
	require.Equal(t, http.StatusNotModified, again.StatusCode, "an idle host's check is a 304")
	require.Empty(t, body(t, again))

	v1 := get(t, l.http.URL+"/metadata/1.root.json")
	require.Equal(t, http.StatusOK, v1.StatusCode)
	require.Contains(t, v1.Header.Get("Cache-Control"), "immutable", "versioned metadata never changes")

	for _, p := range []string{"/metadata/2.root.json", "/metadata/../../etc/passwd", "/targets/", "/keys/", "/metadata/%2e%2e/%2e%2e/x"} {
		r := get(t, l.http.URL+p)
		require.Contains(t, []int{http.StatusNotFound, http.StatusMovedPermanently}, r.StatusCode, p)
		if r.StatusCode == http.StatusNotFound && strings.HasPrefix(p, "/metadata/2") {
			require.Equal(t, "no-store", r.Header.Get("Cache-Control"), "a missing next root must not be cached")
		}
	}

	// The repository is re-signed (a rollout plan): timestamp.json changes
	// and the old ETag no longer matches.
	_, _, err := l.client().Start(context.Background(), server.StartRequest{ActionRequest: server.ActionRequest{Who: "t", Why: "t"}, Channel: 291, Version: 1002, From: 1001})
	require.NoError(t, err)
	changed := get(t, l.http.URL+"/metadata/timestamp.json", "If-None-Match", tag)
	require.Equal(t, http.StatusOK, changed.StatusCode)
	require.NotEqual(t, tag, changed.Header.Get("ETag"))

	m := body(t, get(t, l.http.URL+"/metrics"))
	require.Contains(t, m, "ringfence_checkins_total 3")
}

func TestTelemetryIngest(t *testing.T) {
	l := newLab(t, server.Options{BatchBurst: 3, BatchesPerHost: 0.001})
	h := newHost(t, "")
	l.admit(t, h)
	_, _, err := l.client().Start(context.Background(), server.StartRequest{ActionRequest: server.ActionRequest{Who: "t", Why: "t"}, Channel: 291, Version: 1002, From: 1001})
	require.NoError(t, err)
	b := h.batch(1001, wire.Event{Kind: wire.EventHealthy, Version: 1001})
	code, ans := l.post(t, h, b)
	require.Equal(t, http.StatusOK, code, ans)
	var resp wire.Response
	require.NoError(t, json.Unmarshal([]byte(ans), &resp))
	require.Equal(t, []string{"e1", "e2"}, resp.Accepted)
	require.Equal(t, 2, resp.Applied)

	code, ans = l.post(t, h, b)
	require.Equal(t, http.StatusOK, code, "a resent batch is acknowledged again: %s", ans)
	require.NoError(t, json.Unmarshal([]byte(ans), &resp))
	require.Equal(t, 0, resp.Applied)
	require.Equal(t, 2, resp.Stale, "and has no effect")
	m := body(t, get(t, l.http.URL+"/metrics"))
	require.Contains(t, m, `ringfence_telemetry_events_total{type="healthy",version="1001"} 1`, "taken once")
	require.Contains(t, m, "ringfence_telemetry_stale_events_total 2")
	require.Contains(t, m, "ringfence_hosts 1")

	raw, err := json.Marshal(b)
	require.NoError(t, err)
	other := newHost(t, "")
	for _, tc := range []struct {
		name string
		body []byte
		sig  string
		code int
		want string
	}{
		{"signed by another key", raw, wire.SignatureValue(other.id.Sign(raw)), http.StatusUnauthorized, "does not verify"},
		{"no signature", raw, "", http.StatusUnauthorized, "does not verify"},
		{"not JSON", []byte("{"), "", http.StatusBadRequest, "malformed"},
		{"unknown format", bytes.Replace(raw, []byte(wire.Format), []byte("ringfence-telemetry/v9"), 1), "", http.StatusBadRequest, "format"},
		{"over 1 MiB", bytes.Repeat([]byte(" "), wire.MaxBody+1), "", http.StatusRequestEntityTooLarge, "over"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, ans := l.postRaw(t, tc.body, tc.sig)
			require.Equal(t, tc.code, code, ans)
			require.Contains(t, ans, tc.want)
		})
	}

	// Rate limit per host: a burst of 3, then 429 with Retry-After; another
	// host is not affected.
	l.admit(t, other)
	code, _ = l.post(t, h, h.batch(1001))
	require.Equal(t, http.StatusOK, code)
	code, ans = l.post(t, h, h.batch(1001))
	require.Equal(t, http.StatusTooManyRequests, code, ans)
	code, _ = l.post(t, other, other.batch(1001))
	require.Equal(t, http.StatusOK, code)
}

func TestOperatorAPINeedsTheToken(t *testing.T) {
	l := newLab(t, server.Options{})
	bad := &server.Client{URL: l.http.URL, Token: "wrong"}
	_, _, err := bad.Start(context.Background(), server.StartRequest{Channel: 291, Version: 1002})
	require.ErrorContains(t, err, "operator token")
	_, _, err = l.client().Start(context.Background(), server.StartRequest{Channel: 291, Version: 1009})
	require.ErrorContains(t, err, "not published")
	_, _, err = l.client().Act(context.Background(), 291, "halt", "bob", "x")
	require.ErrorContains(t, err, "no rollout")
	_, _, err = l.client().Start(context.Background(), server.StartRequest{Channel: 291, Version: 1002,
		Stages: []server.StageRequest{{Name: "all", Percent: 100, Bake: "soon"}}})
	require.ErrorContains(t, err, `stage 1 (all): bake "soon" is not a positive duration`)
	_, _, err = l.client().Start(context.Background(), server.StartRequest{Channel: 291, Version: 1002, Silence: "0s"})
	require.ErrorContains(t, err, `silence "0s"`)
	vs, err := bad.Rollouts(context.Background())
	require.NoError(t, err, "reading needs no token")
	require.Empty(t, vs)
}

// plan reads the signed plan through the host's real TUF client.
func (l *lab) plan(t *testing.T) *rollout.Plan {
	t.Helper()
	dir := testtmp.Dir(t)
	c, err := tuf.New(tuf.Options{Dir: filepath.Join(dir, "tuf"), DownloadDir: filepath.Join(dir, "downloads"), MetadataURL: l.http.URL + "/metadata",
		TrustedRoot: l.root, Clock: l.clock.Now})
	require.NoError(t, err)
	require.NoError(t, c.Refresh(context.Background()))
	path, err := c.Download(context.Background(), rollout.RolloutTarget(291))
	require.NoError(t, err)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	p, err := rollout.Parse(data)
	require.NoError(t, err)
	return p
}

// TestCanaryHaltRollsBackThroughTUF: a canary host reports a crash-on-load
// revert; the server halts, rolls back, and the plan hosts verify through
// TUF sends everyone to 1001 with 1002 denied. A restart keeps all of it.
func TestCanaryHaltRollsBackThroughTUF(t *testing.T) {
	l := newLab(t, server.Options{CanaryTags: []string{"canary"}})
	canary, other := newHost(t, "canary"), newHost(t, "")
	l.admit(t, canary, other)
	for _, h := range []*host{canary, other} {
		code, ans := l.post(t, h, h.batch(1001, wire.Event{Kind: wire.EventHeartbeat, Version: 1001}))
		require.Equal(t, http.StatusOK, code, ans)
	}
	d, v, err := l.client().Start(context.Background(), server.StartRequest{ActionRequest: server.ActionRequest{Who: "alice", Why: "weekly content"}, Channel: 291, Version: 1002})
	require.NoError(t, err)
	require.Equal(t, controller.KindStart, d.Kind)
	require.Equal(t, uint32(1001), v.From, "from what the hosts run")
	p := l.plan(t)
	require.Equal(t, uint32(1002), p.Stages[p.StageFor(rollout.Host{ID: canary.id.HostID()})].Version, "the plan names the canary the server tagged")
	require.Equal(t, uint32(1001), p.Stages[len(p.Stages)-1].Version)

	l.clock.Advance(time.Minute)
	code, ans := l.post(t, canary, canary.batch(1001,
		wire.Event{Kind: wire.EventInstalled, Version: 1002},
		wire.Event{ID: "reverted-291-1002-load-crash", Kind: wire.EventReverted, Version: 1002, Reason: "load-crash", Critical: true}))
	require.Equal(t, http.StatusOK, code, ans)

	vs, err := l.client().Rollouts(context.Background())
	require.NoError(t, err)
	require.Len(t, vs, 1)
	require.Equal(t, controller.StateRolledBack, vs[0].State)
	require.Equal(t, controller.KindRollback, vs[0].Decisions[0].Kind)
	require.Equal(t, controller.KindHalt, vs[0].Decisions[1].Kind)
	require.Contains(t, vs[0].Decisions[1].Reason, "canary group")
	require.Equal(t, canary.id.HostID(), vs[0].Decisions[1].Evidence.Host)

	p = l.plan(t)
	require.Equal(t, []uint32{1002}, p.Deny)
	require.Equal(t, []rollout.Stage{{Name: "fleet", Percent: 100, Version: 1001}}, p.Stages)

	m := body(t, get(t, l.http.URL+"/metrics"))
	require.Contains(t, m, `ringfence_gate_decisions_total{kind="halt"} 1`)
	require.Contains(t, m, `ringfence_version_hosts{channel="291",version="1001"} 2`)

	// Restart: everything is still there, and the same revert reported
	// again is not counted twice.
	l.stop()
	l.start(t, server.Options{CanaryTags: []string{"canary"}})
	vs, err = l.client().Rollouts(context.Background())
	require.NoError(t, err)
	require.Equal(t, controller.StateRolledBack, vs[0].State)
	require.Equal(t, int64(1), vs[0].Gate.TreatedFailures)
	code, _ = l.post(t, canary, canary.batch(1001, wire.Event{ID: "reverted-291-1002-load-crash", Kind: wire.EventReverted, Version: 1002, Reason: "load-crash"}))
	require.Equal(t, http.StatusOK, code)
	vs, _ = l.client().Rollouts(context.Background())
	require.Equal(t, int64(1), vs[0].Gate.TreatedFailures)
	require.Len(t, vs[0].Decisions, 3)
}

// TestRestartResignsALaggingPlan: a decision committed to the state whose
// plan was never signed (a crash between the two) is signed at start-up.
func TestRestartResignsALaggingPlan(t *testing.T) {
	l := newLab(t, server.Options{})
	_, _, err := l.client().Start(context.Background(), server.StartRequest{ActionRequest: server.ActionRequest{Who: "a", Why: "b"}, Channel: 291, Version: 1002, From: 1001})
	require.NoError(t, err)
	l.stop()
	// Put back the repository as it was before the rollback below was
	// signed: copy the metadata aside, act, restore.
	saved := snapshotDir(t, filepath.Join(l.repo, "metadata"))
	l.start(t, server.Options{})
	_, _, err = l.client().Act(context.Background(), 291, controller.KindRollback, "bob", "customer report")
	require.NoError(t, err)
	l.stop()
	restoreDir(t, filepath.Join(l.repo, "metadata"), saved)
	l.start(t, server.Options{})
	p := l.plan(t)
	require.Equal(t, []uint32{1002}, p.Deny, "the rollback recorded in the state is signed at start-up")
}

func snapshotDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		out[e.Name()] = b
	}
	return out
}

func restoreDir(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range es {
		if _, ok := files[e.Name()]; !ok {
			require.NoError(t, os.Remove(filepath.Join(dir, e.Name())))
		}
	}
	for n, b := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), b, 0o644))
	}
}

// TestHostLimit: --max-hosts bounds the fleet; a host that would be
// admitted beyond it waits as pending, and the fleet keeps reporting.
func TestHostLimit(t *testing.T) {
	l := newLab(t, server.Options{MaxHosts: 2})
	a, b, c := newHost(t, ""), newHost(t, ""), newHost(t, "")
	l.admit(t, a, b)
	_, err := l.srv.Accept(c.id.HostID(), server.HostRequest{ActionRequest: server.ActionRequest{Why: "x"}})
	require.ErrorContains(t, err, "--max-hosts")
	tok, err := l.client().CreateToken(context.Background(), server.TokenRequest{TTL: "1h"})
	require.NoError(t, err)
	cb := c.batch(1001)
	cb.EnrolmentToken = tok.Token
	code, ans := l.post(t, c, cb)
	require.Equal(t, http.StatusForbidden, code)
	require.Contains(t, ans, "--max-hosts")
	require.Contains(t, ans, `"admission":"pending"`)
	code, ans = l.post(t, a, a.batch(1001))
	require.Equal(t, http.StatusOK, code, "known hosts still report: %s", ans)
}

// timestampVersion reads the repository's timestamp version.
func timestampVersion(t *testing.T, repo string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, "metadata", "timestamp.json"))
	require.NoError(t, err)
	var m struct {
		Signed struct {
			Version int `json:"version"`
		} `json:"signed"`
	}
	require.NoError(t, json.Unmarshal(b, &m))
	return m.Signed.Version
}

// TestRunEvaluatesAndRefreshes: the server's loop advances a stage whose
// bake passed and whose hosts reported healthy, and re-signs timestamp and
// snapshot once RefreshInterval has passed, so they never expire under a
// running server.
func TestRunEvaluatesAndRefreshes(t *testing.T) {
	l := newLab(t, server.Options{CanaryTags: []string{"canary"}, RefreshInterval: 6 * time.Hour})
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.srv.Run(ctx, tick) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	step := func() { tick <- time.Time{}; tick <- time.Time{} } // the second send waits until the first was handled

	canary := newHost(t, "canary")
	l.admit(t, canary)
	code, ans := l.post(t, canary, canary.batch(1001))
	require.Equal(t, http.StatusOK, code, ans)
	_, _, err := l.client().Start(context.Background(), server.StartRequest{ActionRequest: server.ActionRequest{Who: "a", Why: "b"}, Channel: 291, Version: 1002,
		Stages: []server.StageRequest{{Name: "canary", Tags: []string{"canary"}, Bake: "10m", MinHosts: 1}, {Name: "all", Percent: 100, Bake: "24h", MinHosts: 1}}})
	require.NoError(t, err)
	l.clock.Advance(time.Minute)
	code, ans = l.post(t, canary, canary.batch(1002, wire.Event{Kind: wire.EventInstalled, Version: 1002}, wire.Event{Kind: wire.EventHealthy, Version: 1002}))
	require.Equal(t, http.StatusOK, code, ans)
	step()
	require.Equal(t, 0, l.srv.Status()[0].Stage, "baking")
	l.clock.Advance(10 * time.Minute)
	step()
	require.Equal(t, 1, l.srv.Status()[0].Stage, "baked, one healthy host: the next stage")

	v := timestampVersion(t, l.repo)
	l.clock.Advance(5 * time.Hour)
	step()
	require.Equal(t, v, timestampVersion(t, l.repo), "not yet")
	l.clock.Advance(2 * time.Hour)
	code, _ = l.post(t, canary, canary.batch(1002)) // stays heard from
	require.Equal(t, http.StatusOK, code)
	step()
	require.Greater(t, timestampVersion(t, l.repo), v, "re-signed after 6 hours")
}

// TestPublishWhileServing: a publisher changes the repository while the
// server runs; the server sees the new version, and its next signature
// keeps the publisher's target (both write under the repository's lock, on
// what is on disk).
func TestPublishWhileServing(t *testing.T) {
	l := newLab(t, server.Options{})
	data := testfiles.Channel(t, "good-ipc-1003")
	require.NoError(t, tufrepo.Update(l.repo, l.keys, l.clock, func(r *tufrepo.Repo) error {
		_, err := r.Publish(291, 1003, data)
		return err
	}))
	_, _, err := l.client().Start(context.Background(), server.StartRequest{ActionRequest: server.ActionRequest{Who: "a", Why: "b"}, Channel: 291, Version: 1003, From: 1001})
	require.NoError(t, err, "the server sees what was published after it started")

	dir := testtmp.Dir(t)
	c, err := tuf.New(tuf.Options{Dir: filepath.Join(dir, "tuf"), DownloadDir: filepath.Join(dir, "downloads"), MetadataURL: l.http.URL + "/metadata",
		TrustedRoot: l.root, Clock: l.clock.Now})
	require.NoError(t, err)
	require.NoError(t, c.Refresh(context.Background()))
	require.NotNil(t, c.Targets("content")[rollout.ContentTarget(291, 1003)], "the publisher's target survives the server's signature")
	require.Equal(t, uint32(1003), l.plan(t).Stages[0].Version)
	_, err = tufrepo.Verify(context.Background(), l.repo, l.root, l.clock.Now())
	require.NoError(t, err)
}

package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringfence/ringfence/tufrepo"
)

// The tests that build packages are slow (go build of three commands, for
// each build) and run under RINGFENCE_DIST=1, which 'make test-dist' sets.
func needDist(t *testing.T) {
	t.Helper()
	if os.Getenv("RINGFENCE_DIST") == "" {
		t.Skip("builds the packages: run make test-dist (RINGFENCE_DIST=1)")
	}
}

// The fixture's fixed inputs: two builds with these give the same bytes.
const (
	fixtureVersion = "1.2.3+4.gabcdef012345"
	fixtureEpoch   = 1764547200 // 2025-12-01T00:00:00Z
	fixtureArch    = "amd64"
)

// fixture is one build of the amd64 packages, with a real repository's
// root and a recording server's URL as the vendor's values, shared by the
// tests of this process.
type fixture struct {
	dir   string // everything below is in it
	repo  string // the TUF repository (tufrepo.Init)
	caps  string // the vendor's capability manifest (sensor 7.12)
	srv   *httptest.Server
	hits  *recorder
	opts  Options
	res   Result
	files map[string]string // "ringfenced.deb", "ringfenced.rpm", "ringfence-server.deb", ... -> path
}

var fx struct {
	once sync.Once
	f    *fixture
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if f := fx.f; f != nil {
		f.srv.Close()
		os.RemoveAll(f.dir)
	}
	os.Exit(code)
}

// built returns the shared fixture, building it on first use.
func built(t *testing.T) *fixture {
	t.Helper()
	needDist(t)
	fx.once.Do(func() { fx.f, fx.err = buildFixture() })
	if fx.err != nil {
		t.Fatal(fx.err)
	}
	return fx.f
}

func buildFixture() (*fixture, error) {
	dir, err := os.MkdirTemp("", "ringfence-dist-test-")
	if err != nil {
		return nil, err
	}
	f := &fixture{dir: dir, repo: filepath.Join(dir, "repo"), hits: newRecorder()}
	if _, err := tufrepo.Init(f.repo, filepath.Join(dir, "keys"), tufrepo.InitOptions{KeyType: tufrepo.KeyEd25519}); err != nil {
		return nil, err
	}
	f.caps, err = filepath.Abs(filepath.Join("..", "testdata", "capabilities", "sensor-7.12.json"))
	if err != nil {
		return nil, err
	}
	// The vendor's server: the repository as static files, and a telemetry
	// intake that records each batch and refuses it (the daemon keeps its
	// events and tries again).
	files := http.FileServer(http.Dir(f.repo))
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.add(r.Method + " " + r.URL.Path)
		if r.Method == http.MethodPost {
			http.Error(w, "recorded", http.StatusServiceUnavailable)
			return
		}
		files.ServeHTTP(w, r)
	}))
	f.opts = Options{
		Out:        filepath.Join(dir, "out1"),
		VendorRoot: filepath.Join(f.repo, "metadata", "root.json"),
		ServerURL:  f.srv.URL,
		VendorCaps: f.caps,
		Version:    fixtureVersion,
		Epoch:      fixtureEpoch,
		Arches:     []string{fixtureArch},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if f.res, err = Build(ctx, f.opts); err != nil {
		return nil, err
	}
	f.files = map[string]string{}
	for _, a := range f.res.Artifacts {
		for _, p := range []string{"ringfenced", "ringfence-server"} {
			for _, ext := range []string{".deb", ".rpm"} {
				if strings.HasSuffix(a.Name, ext) && (strings.HasPrefix(a.Name, p+"_") || strings.HasPrefix(a.Name, p+"-"+fixtureVersion)) {
					f.files[p+ext] = filepath.Join(f.opts.Out, a.Name)
				}
			}
		}
	}
	return f, nil
}

// recorder keeps the requests the vendor's server saw, and wakes waiters
// on each one.
type recorder struct {
	mu      sync.Mutex
	seen    []string
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, s)
	close(r.changed)
	r.changed = make(chan struct{})
}

// wait blocks until a request matches, or ctx ends; it returns whether one
// did and every request seen.
func (r *recorder) wait(ctx context.Context, match func(string) bool) (bool, []string) {
	for {
		r.mu.Lock()
		seen, changed := append([]string(nil), r.seen...), r.changed
		r.mu.Unlock()
		for _, s := range seen {
			if match(s) {
				return true, seen
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false, seen
		}
	}
}

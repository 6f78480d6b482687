package tuf_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/ringfence/ringfence/compat"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/tuf"
	"github.com/ringfence/ringfence/tufrepo"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// fixture is a repository on disk served over real HTTP on loopback, and a
// host root directory.
type fixture struct {
	t        testing.TB
	repoDir  string
	keys     string
	repo     *tufrepo.Repo
	clock    *clock.Fake // the time of the repository and of the client
	srv      *httptest.Server
	host     string
	root     []byte // the root.json installed with the agent
	requests atomic.Int64
	bytes    atomic.Int64
	handler  http.Handler // replaceable, for attacks
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{t: t, repoDir: filepath.Join(testtmp.Dir(t), "repo"), keys: filepath.Join(testtmp.Dir(t), "keys"), clock: clock.NewFake(t0), host: testtmp.Dir(t)}
	var err error
	f.repo, err = tufrepo.Init(f.repoDir, f.keys, tufrepo.InitOptions{Clock: f.clock})
	require.NoError(t, err)
	f.root, err = f.repo.RootJSON()
	require.NoError(t, err)
	serve(f)
	return f
}

// httptestServer serves f.handler (replaceable by an attack) on loopback,
// counting requests and bytes.
func httptestServer(f *fixture) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		f.handler.ServeHTTP(countingWriter{w, &f.bytes}, r)
	}))
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

// Unwrap lets http.ResponseController reach the connection (Flush, Hijack).
func (c countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func (f *fixture) publish(channel, version uint32, data []byte) {
	f.t.Helper()
	_, err := f.repo.Publish(channel, version, data)
	require.NoError(f.t, err)
}

func (f *fixture) client() *tuf.Client {
	f.t.Helper()
	c, err := tuf.New(tuf.Options{
		Dir: filepath.Join(f.host, "tuf"), DownloadDir: filepath.Join(f.host, "downloads"),
		TrustedRoot: f.root, MetadataURL: f.srv.URL + "/metadata", TargetsURL: f.srv.URL + "/targets",
		Clock: f.clock.Now, RetryBase: time.Millisecond,
	})
	require.NoError(f.t, err)
	return c
}

func channelFile(t testing.TB, name string) []byte {
	b, err := os.ReadFile(filepath.Join("..", "testdata", "channels", name+".rfch"))
	require.NoError(t, err)
	return b
}

func TestRefreshAndDownload(t *testing.T) {
	f := newFixture(t)
	data := channelFile(t, "good-ipc-1001")
	f.publish(291, 1001, data)
	plan := []byte(`{"format":"ringfence-rollout/v1","channel":291,"stages":[{"name":"all","percent":100,"version":1001}]}`)
	require.NoError(t, f.repo.SetRollout(291, plan))

	c := f.client()
	ctx := context.Background()
	require.NoError(t, c.Refresh(ctx))
	path, err := c.Download(ctx, "channels/291/1001.rfch")
	require.NoError(t, err)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, data, got)
	p, err := c.Download(ctx, "rollout/291.json")
	require.NoError(t, err)
	got, err = os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, plan, got)
	require.Contains(t, c.Targets("content"), "channels/291/1001.rfch")

	// Persisted: a new client on the same root dir trusts what was fetched.
	for _, n := range []string{"root", "timestamp", "snapshot", "targets", "content", "rollout"} {
		_, err := os.Stat(filepath.Join(f.host, "tuf", n+".json"))
		require.NoError(t, err, n)
	}
	_, err = os.Stat(filepath.Join(f.host, "tuf", ".work"))
	require.True(t, os.IsNotExist(err), "scratch directory removed")

	_, err = c.Download(ctx, "channels/291/9999.rfch")
	require.ErrorIs(t, err, tuf.ErrNotFound)
}

// goTUF is go-tuf's own updater (not our client) over f's repository,
// trusting f's root, refreshed at t0; dir is its local directory.
func goTUF(t *testing.T, f *fixture) (up *updater.Updater, dir string) {
	t.Helper()
	cfg, err := config.New(f.srv.URL+"/metadata", f.root)
	require.NoError(t, err)
	dir = testtmp.Dir(t)
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = dir, dir
	cfg.RemoteTargetsURL = f.srv.URL + "/targets"
	cfg.PrefixTargetsWithHash = true
	up, err = updater.New(cfg)
	require.NoError(t, err)
	up.UnsafeSetRefTime(t0)
	require.NoError(t, up.Refresh())
	return up, dir
}

// TestGoTUFReadsRepository: the repository is standard TUF; go-tuf's own
// updater (not our wrapper) refreshes it and downloads a target.
func TestGoTUFReadsRepository(t *testing.T) {
	f := newFixture(t)
	data := channelFile(t, "good-ipc-1002")
	f.publish(291, 1002, data)
	up, dir := goTUF(t, f)
	tf, err := up.GetTargetInfo("channels/291/1002.rfch")
	require.NoError(t, err)
	_, got, err := up.DownloadTarget(tf, filepath.Join(dir, "out"), "")
	require.NoError(t, err)
	require.Equal(t, sha256.Sum256(data), sha256.Sum256(got))
}

// TestCustomConstraintReadBack: a compatibility constraint signed into a
// target's custom metadata (package compat) reads back unchanged through
// go-tuf's own updater and through our client, and a target without one
// has none.
func TestCustomConstraintReadBack(t *testing.T) {
	f := newFixture(t)
	f.publish(291, 1002, channelFile(t, "good-ipc-1002"))
	only712 := compat.Constraint{Sensors: []string{"7.12"}, Excluded: map[string]string{"7.11": "FIELD_NOT_SUPPLIED"}}
	_, err := f.repo.PublishFor(291, 1004, channelFile(t, "cf291-shape"), only712)
	require.NoError(t, err)

	up, _ := goTUF(t, f)
	tf, err := up.GetTargetInfo("channels/291/1004.rfch")
	require.NoError(t, err)
	require.NotNil(t, tf.Custom, "go-tuf keeps the custom metadata")
	got, err := compat.Parse(*tf.Custom)
	require.NoError(t, err)
	require.Equal(t, only712, got, "go-tuf's updater")

	c := f.client()
	require.NoError(t, c.Refresh(context.Background()))
	got, err = compat.Parse(c.Custom("content", "channels/291/1004.rfch"))
	require.NoError(t, err)
	require.Equal(t, only712, got, "our client")
	require.Nil(t, c.Custom("content", "channels/291/1002.rfch"), "unconstrained content carries no custom metadata")
	require.Nil(t, c.Custom("content", "channels/291/9999.rfch"))
}

// TestIdleRefreshIsSmall: a refresh with nothing new fetches root N+1 (404)
// and timestamp.json only.
func TestIdleRefreshIsSmall(t *testing.T) {
	f := newFixture(t)
	f.publish(291, 1001, channelFile(t, "good-ipc-1001"))
	c := f.client()
	require.NoError(t, c.Refresh(context.Background()))
	f.requests.Store(0)
	f.bytes.Store(0)
	require.NoError(t, c.Refresh(context.Background()))
	require.Equal(t, int64(2), f.requests.Load(), "2.root.json (404) and timestamp.json")
	require.Less(t, f.bytes.Load(), int64(2048))
}

func TestKeyRotationAndRootChain(t *testing.T) {
	f := newFixture(t)
	f.publish(291, 1001, channelFile(t, "good-ipc-1001"))
	c := f.client()
	require.NoError(t, c.Refresh(context.Background()))
	// Rotate every role; the host walks root 1 -> 2 -> ... by itself.
	for _, role := range []string{"root", "targets", "snapshot", "timestamp", "content", "rollout", "root"} {
		require.NoError(t, f.repo.RotateKeys(role, tufrepo.KeyECDSAP256), role)
	}
	f.publish(291, 1002, channelFile(t, "good-ipc-1002"))
	require.NoError(t, c.Refresh(context.Background()))
	_, err := c.Download(context.Background(), "channels/291/1002.rfch")
	require.NoError(t, err)
	// A fresh host that installed the original root.json gets there too.
	f.host = testtmp.Dir(t)
	c2 := f.client()
	require.NoError(t, c2.Refresh(context.Background()))
	_, err = c2.Download(context.Background(), "channels/291/1002.rfch")
	require.NoError(t, err)
	keys, err := os.ReadDir(f.keys)
	require.NoError(t, err)
	require.Len(t, keys, 6, "one key per role: the retired ones are removed")
}

// TestDownloadResumes: a connection cut halfway leaves a partial file; the
// retry asks for the rest with a Range request and the result verifies.
func TestDownloadResumes(t *testing.T) {
	f := newFixture(t)
	data := make([]byte, 256<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	f.publish(291, 2001, data)
	c := f.client()
	require.NoError(t, c.Refresh(context.Background()))
	files := http.FileServer(http.Dir(f.repoDir))
	var cut, ranged atomic.Int64
	f.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, ".2001.rfch") {
			files.ServeHTTP(w, r)
			return
		}
		if r.Header.Get("Range") != "" {
			ranged.Add(1)
			files.ServeHTTP(w, r)
			return
		}
		if cut.Add(1) == 1 {
			// Half the file, then the connection drops.
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			_, _ = w.Write(data[:len(data)/2])
			rc := http.NewResponseController(w)
			require.NoError(t, rc.Flush())
			conn, _, err := rc.Hijack()
			require.NoError(t, err)
			conn.Close()
			return
		}
		files.ServeHTTP(w, r)
	})
	path, err := c.Download(context.Background(), "channels/291/2001.rfch")
	require.NoError(t, err)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, data, got)
	require.Equal(t, int64(1), ranged.Load(), "the second attempt resumed with a Range request")
	_, err = os.Stat(path + ".part")
	require.True(t, os.IsNotExist(err))
}

package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/tufrepo"
)

func TestProtocol(t *testing.T) {
	dir := t.TempDir()
	repo, err := tufrepo.Init(filepath.Join(dir, "repo"), filepath.Join(dir, "keys"), tufrepo.InitOptions{})
	require.NoError(t, err)
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "channels", "good-ipc-1001.rfch"))
	require.NoError(t, err)
	_, err = repo.Publish(291, 1001, data)
	require.NoError(t, err)
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(dir, "repo"))))
	defer srv.Close()

	meta := filepath.Join(dir, "client")
	root := filepath.Join(dir, "repo", "metadata", "1.root.json")
	require.NoError(t, run([]string{"--metadata-dir", meta, "init", root}, "", time.Now))
	base := []string{"--metadata-dir", meta, "--metadata-url", srv.URL + "/metadata"}
	require.NoError(t, run(append(base, "refresh"), "", time.Now))
	for _, f := range []string{"root.json", "timestamp.json", "snapshot.json", "targets.json", "content.json"} {
		_, err := os.Stat(filepath.Join(meta, f))
		require.NoError(t, err, f)
	}
	out := filepath.Join(dir, "out")
	require.NoError(t, os.Mkdir(out, 0o700))
	require.NoError(t, run(append(base, "download", "--target-name", "channels/291/1001.rfch",
		"--target-base-url", srv.URL+"/targets", "--target-dir", out), "", time.Now))
	got, err := os.ReadFile(filepath.Join(out, "channels%2F291%2F1001.rfch"))
	require.NoError(t, err)
	require.Equal(t, data, got)

	// A target whose file the mirror lost: the download fails, and the
	// target directory still holds only verified files; nothing in the
	// metadata directory looks like metadata but metadata.
	_, err = repo.Publish(291, 1002, data[:len(data)-1])
	require.NoError(t, err)
	lost, err := filepath.Glob(filepath.Join(dir, "repo", "targets", "channels", "291", "*.1002.rfch"))
	require.NoError(t, err)
	require.Len(t, lost, 1)
	require.NoError(t, os.Remove(lost[0]))
	require.Error(t, run(append(base, "download", "--target-name", "channels/291/1002.rfch",
		"--target-base-url", srv.URL+"/targets", "--target-dir", out), "", time.Now))
	ents, err := os.ReadDir(out)
	require.NoError(t, err)
	require.Len(t, ents, 1, "only the verified file")
	require.Equal(t, "channels%2F291%2F1001.rfch", ents[0].Name())
	ents, err = os.ReadDir(meta)
	require.NoError(t, err)
	for _, e := range ents {
		if filepath.Ext(e.Name()) == ".json" {
			_, err := os.ReadFile(filepath.Join(meta, e.Name()))
			require.NoError(t, err)
			continue
		}
		require.Equal(t, "partial", e.Name(), "the metadata directory holds role files and the partial directory")
	}

	// The suite's libfaketime setting moves the clock past the timestamp's expiry.
	require.ErrorContains(t, run(append(base, "refresh"), "+2d", time.Now), "expired")
	require.ErrorContains(t, run(append(base, "refresh"), "@2030-01-01 00:00:00", time.Now), "expired")
	require.Error(t, run(append(base, "download", "--target-name", "channels/291/4242.rfch",
		"--target-base-url", srv.URL+"/targets", "--target-dir", out), "", time.Now))
	require.Error(t, run([]string{"refresh"}, "", time.Now))
}

func TestFakeClock(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return base }
	for v, want := range map[string]time.Time{
		"":                     base,
		"+2d":                  base.Add(48 * time.Hour),
		"-1h":                  base.Add(-time.Hour),
		"+30":                  base.Add(30 * time.Second),
		"@2030-05-06 07:08:09": time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC),
	} {
		c, err := fakeClock(v, now)
		require.NoError(t, err, v)
		require.Equal(t, want, c(), v)
	}
	_, err := fakeClock("tomorrow", now)
	require.Error(t, err)
}

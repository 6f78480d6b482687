package tufrepo_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/tufrepo"
)

// TestNoRepository: a directory that holds no repository is ErrNoRepository
// for every way in, and nothing is written into it.
func TestNoRepository(t *testing.T) {
	dir := t.TempDir()
	_, err := tufrepo.Open(dir, dir, nil)
	require.ErrorIs(t, err, tufrepo.ErrNoRepository)
	require.ErrorContains(t, err, "make one with 'ringfence-server repo init'")
	require.ErrorIs(t, tufrepo.Update(dir, dir, nil, func(*tufrepo.Repo) error { return nil }), tufrepo.ErrNoRepository)
	_, err = tufrepo.Verify(context.Background(), dir, nil, time.Now())
	require.ErrorIs(t, err, tufrepo.ErrNoRepository)
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, ents, "no lock file left behind")

	// A bad key type is refused before anything is created.
	repo := filepath.Join(dir, "repo")
	_, err = tufrepo.Init(repo, filepath.Join(dir, "keys"), tufrepo.InitOptions{KeyType: "rsa"})
	require.ErrorContains(t, err, `unknown key type "rsa"`)
	ents, err = os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, ents)
}

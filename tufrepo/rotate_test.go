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

// TestRootChanges checks that both ways of changing root (rotating a role's
// keys, raising a role's threshold) produce a new root version that a client
// trusting only 1.root.json accepts, with the rest of the repository signed
// by the keys the new root names.
func TestRootChanges(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(*tufrepo.Repo) error
		role    string
		keys    int // role key files after the change
		retired bool
	}{
		{"rotate root", func(r *tufrepo.Repo) error { return r.RotateKeys(tufrepo.RoleRoot, tufrepo.KeyEd25519) }, tufrepo.RoleRoot, 1, true},
		{"rotate targets", func(r *tufrepo.Repo) error { return r.RotateKeys(tufrepo.RoleTargets, tufrepo.KeyECDSAP256) }, tufrepo.RoleTargets, 1, true},
		{"rotate snapshot", func(r *tufrepo.Repo) error { return r.RotateKeys(tufrepo.RoleSnapshot, tufrepo.KeyEd25519) }, tufrepo.RoleSnapshot, 1, true},
		{"rotate timestamp", func(r *tufrepo.Repo) error { return r.RotateKeys(tufrepo.RoleTimestamp, tufrepo.KeyEd25519) }, tufrepo.RoleTimestamp, 1, true},
		{"threshold root", func(r *tufrepo.Repo) error { return r.SetThreshold(tufrepo.RoleRoot, 2, tufrepo.KeyECDSAP256) }, tufrepo.RoleRoot, 2, false},
		{"threshold targets", func(r *tufrepo.Repo) error { return r.SetThreshold(tufrepo.RoleTargets, 2, tufrepo.KeyEd25519) }, tufrepo.RoleTargets, 2, false},
		{"threshold timestamp", func(r *tufrepo.Repo) error { return r.SetThreshold(tufrepo.RoleTimestamp, 3, tufrepo.KeyEd25519) }, tufrepo.RoleTimestamp, 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			repo, keys := filepath.Join(dir, "repo"), filepath.Join(dir, "keys")
			r, err := tufrepo.Init(repo, keys, tufrepo.InitOptions{})
			require.NoError(t, err)
			before, _ := filepath.Glob(filepath.Join(keys, tc.role+"-*.key"))

			require.NoError(t, tc.change(r))

			rep, err := tufrepo.Verify(context.Background(), repo, nil, time.Now())
			require.NoError(t, err, "a client trusting 1.root.json walks to the new root")
			require.Equal(t, int64(2), rep.RootVersion)
			after, _ := filepath.Glob(filepath.Join(keys, tc.role+"-*.key"))
			require.Len(t, after, tc.keys)
			for _, k := range before {
				_, err := os.Stat(k)
				require.Equal(t, tc.retired, os.IsNotExist(err), "old key %s", k)
			}

			// Reopened from disk, the repository still signs.
			r2, err := tufrepo.Open(repo, keys, nil)
			require.NoError(t, err)
			require.NoError(t, r2.Refresh())
			_, err = tufrepo.Verify(context.Background(), repo, nil, time.Now())
			require.NoError(t, err)
		})
	}
}

// TestRootChangeNeedsRootKey checks that a root change without the root
// key fails before it writes anything: no new key file is left behind.
func TestRootChangeNeedsRootKey(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*tufrepo.Repo) error
	}{
		{"rotate", func(r *tufrepo.Repo) error { return r.RotateKeys(tufrepo.RoleTimestamp, tufrepo.KeyEd25519) }},
		{"threshold", func(r *tufrepo.Repo) error { return r.SetThreshold(tufrepo.RoleSnapshot, 2, tufrepo.KeyEd25519) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			repo, keys := filepath.Join(dir, "repo"), filepath.Join(dir, "keys")
			_, err := tufrepo.Init(repo, keys, tufrepo.InitOptions{})
			require.NoError(t, err)
			roots, _ := filepath.Glob(filepath.Join(keys, "root-*.key"))
			require.NoError(t, os.Rename(roots[0], filepath.Join(dir, "offline-root.key")))
			before, _ := os.ReadDir(keys)
			r, err := tufrepo.Open(repo, keys, nil)
			require.NoError(t, err)

			require.ErrorIs(t, tc.change(r), tufrepo.ErrNoKey)

			after, _ := os.ReadDir(keys)
			require.Len(t, after, len(before), "no key written")
			rep, err := tufrepo.Verify(context.Background(), repo, nil, time.Now())
			require.NoError(t, err)
			require.Equal(t, int64(1), rep.RootVersion)
		})
	}
}

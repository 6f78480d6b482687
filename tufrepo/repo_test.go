package tufrepo_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/compat"
	"github.com/ringfence/ringfence/tufrepo"
)

func TestInitPublishVerify(t *testing.T) {
	dir := t.TempDir()
	repo, keys := filepath.Join(dir, "repo"), filepath.Join(dir, "keys")
	r, err := tufrepo.Init(repo, keys, tufrepo.InitOptions{KeyType: tufrepo.KeyECDSAP256})
	require.NoError(t, err)
	_, err = tufrepo.Init(repo, keys, tufrepo.InitOptions{})
	require.Error(t, err, "refuses an existing repository")

	ents, err := os.ReadDir(keys)
	require.NoError(t, err)
	require.Len(t, ents, 6)
	for _, e := range ents {
		info, err := e.Info()
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), e.Name())
	}

	data, err := os.ReadFile(filepath.Join("..", "testdata", "channels", "good-ipc-1001.rfch"))
	require.NoError(t, err)
	name, err := r.Publish(291, 1001, data)
	require.NoError(t, err)
	require.Equal(t, "channels/291/1001.rfch", name)
	_, err = r.Publish(291, 1001, data)
	require.NoError(t, err, "the same bytes again are fine")
	_, err = r.Publish(291, 1001, append(data, 0))
	require.ErrorIs(t, err, tufrepo.ErrExists)

	require.Error(t, r.SetRollout(291, []byte(`{"format":"ringfence-rollout/v1","channel":291,"stages":[{"name":"all","percent":100,"version":1005}]}`)),
		"a plan may only name published versions")
	require.NoError(t, r.SetRollout(291, []byte(`{"format":"ringfence-rollout/v1","channel":291,"stages":[{"name":"all","percent":100,"version":1001}]}`)))

	// Reopen from disk and keep going; the root key may be absent.
	roots, _ := filepath.Glob(filepath.Join(keys, "root-*.key"))
	require.Len(t, roots, 1)
	require.NoError(t, os.Rename(roots[0], filepath.Join(dir, "offline-root.key")))
	r2, err := tufrepo.Open(repo, keys, nil)
	require.NoError(t, err)
	require.NoError(t, r2.Refresh())
	require.ErrorIs(t, r2.RotateKeys("timestamp", tufrepo.KeyEd25519), tufrepo.ErrNoKey, "root changes need the root key")

	rep, err := tufrepo.Verify(context.Background(), repo, nil, time.Now())
	require.NoError(t, err)
	require.Equal(t, []string{"channels/291/1001.rfch", "rollout/291.json"}, rep.Targets)
	_, err = tufrepo.Verify(context.Background(), repo, nil, time.Now().Add(48*time.Hour))
	require.Error(t, err, "the timestamp expires after a day")

	// A tampered target fails verification.
	paths, _ := filepath.Glob(filepath.Join(repo, "targets", "channels", "291", "*.1001.rfch"))
	require.NoError(t, os.WriteFile(paths[0], append(data, 'x'), 0o644))
	_, err = tufrepo.Verify(context.Background(), repo, nil, time.Now())
	require.Error(t, err)
}

// TestPublishFor: a constraint is signed with its content, read back from
// disk, fixed once published, and binds every plan that names the version.
func TestPublishFor(t *testing.T) {
	dir := t.TempDir()
	repo, keys := filepath.Join(dir, "repo"), filepath.Join(dir, "keys")
	r, err := tufrepo.Init(repo, keys, tufrepo.InitOptions{})
	require.NoError(t, err)
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "channels", name))
		require.NoError(t, err)
		return b
	}
	only712 := compat.Constraint{Sensors: []string{"7.12"}, Excluded: map[string]string{"7.11": "FIELD_NOT_SUPPLIED"}}
	cf291 := read("cf291-shape.rfch")
	_, err = r.PublishFor(291, 1004, cf291, only712)
	require.NoError(t, err)
	_, err = r.Publish(291, 1002, read("good-ipc-1002.rfch"))
	require.NoError(t, err)

	_, err = r.PublishFor(291, 1004, cf291, only712)
	require.NoError(t, err, "the same bytes and constraint again change nothing")
	_, err = r.Publish(291, 1004, cf291)
	require.ErrorIs(t, err, tufrepo.ErrOtherConstraint, "hosts may hold the constrained version: a wider one needs a new version")
	_, err = r.PublishFor(291, 1005, cf291, compat.Constraint{Sensors: []string{"7.12 beta"}})
	require.ErrorIs(t, err, compat.ErrConstraint, "a constraint hosts could not read is never signed")

	r, err = tufrepo.Open(repo, keys, nil)
	require.NoError(t, err)
	got, err := r.Constraint(291, 1004)
	require.NoError(t, err)
	require.Equal(t, only712, got)
	got, err = r.Constraint(291, 1002)
	require.NoError(t, err)
	require.True(t, got.Any())
	_, err = r.Constraint(291, 1003)
	require.ErrorIs(t, err, tufrepo.ErrNotPublished)

	plan := func(sensors string) []byte {
		return []byte(`{"format":"ringfence-rollout/v1","channel":291,"stages":[` +
			`{"name":"canary","percent":0,"hosts":["h1"],"version":1004` + sensors + `},{"name":"rest","percent":100,"version":1002}]}`)
	}
	require.ErrorContains(t, r.SetRollout(291, plan("")), "published for sensor 7.12 only", "a stage may not give constrained content to any sensor")
	require.ErrorContains(t, r.SetRollout(291, plan(`,"sensors":["7.11","7.12"]`)), "published for sensor 7.12 only")
	require.NoError(t, r.SetRollout(291, plan(`,"sensors":["7.12"]`)))
}

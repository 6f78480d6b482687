package fleetdb_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/fleetdb"
	"github.com/ringfence/ringfence/internal/testtmp"
)

func TestCommitLoadFresh(t *testing.T) {
	dir := testtmp.Dir(t)
	db, err := fleetdb.Open(dir, time.Second)
	require.NoError(t, err)
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

	fresh, err := db.Fresh("h-1", []string{"a", "b"})
	require.NoError(t, err)
	require.Equal(t, []bool{true, true}, fresh)

	h := &controller.Host{ID: "h-1", LastSeen: now, Versions: map[uint32]uint32{291: 1001}}
	r := &controller.Rollout{Spec: controller.Spec{Channel: 291, To: 1002, From: 1001}, State: controller.StateRunning, Deny: []uint32{999}}
	require.NoError(t, db.Commit("h-1", []string{"a"}, now, controller.Changes{Hosts: []*controller.Host{h}, Rollouts: []*controller.Rollout{r}}))

	fresh, err = db.Fresh("h-1", []string{"a", "b"})
	require.NoError(t, err)
	require.Equal(t, []bool{false, true}, fresh, "an event id is taken once per host")
	fresh, err = db.Fresh("h-2", []string{"a"})
	require.NoError(t, err)
	require.Equal(t, []bool{true}, fresh, "ids are per host")

	// A second process cannot open it while this one has it.
	_, err = fleetdb.Open(dir, 50*time.Millisecond)
	require.ErrorIs(t, err, fleetdb.ErrLocked)
	require.NoError(t, db.Close())

	db, err = fleetdb.Open(dir, time.Second)
	require.NoError(t, err)
	defer db.Close()
	hosts, rollouts, err := db.Load()
	require.NoError(t, err)
	require.Len(t, hosts, 1)
	require.Equal(t, h.Versions, hosts[0].Versions)
	require.True(t, h.LastSeen.Equal(hosts[0].LastSeen))
	require.Len(t, rollouts, 1)
	require.Equal(t, r.Deny, rollouts[0].Deny)
	require.Equal(t, r.State, rollouts[0].State)

	// Event ids older than the retention are forgotten.
	require.NoError(t, db.Commit("h-1", []string{"c"}, now.Add(fleetdb.Retention), controller.Changes{}))
	n, err := db.Prune(now.Add(fleetdb.Retention + time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	fresh, err = db.Fresh("h-1", []string{"a", "c"})
	require.NoError(t, err)
	require.Equal(t, []bool{true, false}, fresh)
}

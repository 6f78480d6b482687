package fleetdb_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/fleetdb"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/wire"
)

func TestCommitLoad(t *testing.T) {
	dir := testtmp.Dir(t)
	db, err := fleetdb.Open(dir, fleetdb.Options{Timeout: time.Second})
	require.NoError(t, err)
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

	h := &controller.Host{ID: "h-1", LastSeen: now, LastSeq: 42, Tags: []string{"canary"}, Versions: map[uint32]uint32{291: 1001}}
	gone := &controller.Host{ID: "h-2"}
	r := &controller.Rollout{Spec: controller.Spec{Channel: 291, To: 1002, From: 1001}, State: controller.StateRunning, Deny: []uint32{999}}
	rec := &admission.Record{ID: "h-3", State: wire.AdmissionPending, FirstSeen: now}
	tok := &admission.Token{ID: "t1", Hash: "ab", Expires: now.Add(time.Hour)}
	require.NoError(t, db.Commit(controller.Changes{Hosts: []*controller.Host{h, gone}, Rollouts: []*controller.Rollout{r}},
		admission.Changes{Records: []*admission.Record{rec}, Tokens: []*admission.Token{tok}}))
	require.NoError(t, db.Commit(controller.Changes{Removed: []string{"h-2"}}, admission.Changes{}))

	// A second process cannot open it while this one has it.
	_, err = fleetdb.Open(dir, fleetdb.Options{Timeout: 50 * time.Millisecond})
	require.ErrorIs(t, err, fleetdb.ErrLocked)
	require.NoError(t, db.Close())

	db, err = fleetdb.Open(dir, fleetdb.Options{Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	st, err := db.Load()
	require.NoError(t, err)
	require.Len(t, st.Hosts, 1, "a removed host is deleted")
	require.Equal(t, h.Versions, st.Hosts[0].Versions)
	require.Equal(t, uint64(42), st.Hosts[0].LastSeq, "the replay guard survives a restart")
	require.Equal(t, []string{"canary"}, st.Hosts[0].Tags)
	require.True(t, h.LastSeen.Equal(st.Hosts[0].LastSeen))
	require.Len(t, st.Rollouts, 1)
	require.Equal(t, r.Deny, st.Rollouts[0].Deny)
	require.Equal(t, r.State, st.Rollouts[0].State)
	require.Equal(t, wire.AdmissionPending, st.Records[0].State)
	require.Equal(t, "t1", st.Tokens[0].ID)

	require.NoError(t, db.Commit(controller.Changes{}, admission.Changes{DeletedRecords: []string{"h-3"}}))
	st, err = db.Load()
	require.NoError(t, err)
	require.Empty(t, st.Records)
}

// TestSchema1Migrates: a schema 1 file (with its bucket of event ids) opens,
// loses the event ids, and keeps hosts and rollouts.
func TestSchema1Migrates(t *testing.T) {
	dir := testtmp.Dir(t)
	b, err := bolt.Open(dir+"/"+fleetdb.FileName, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, b.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"meta", "hosts", "rollouts", "events"} {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		if err := tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte("1")); err != nil {
			return err
		}
		if err := tx.Bucket([]byte("events")).Put([]byte("h-1\x00e1"), make([]byte, 8)); err != nil {
			return err
		}
		return tx.Bucket([]byte("hosts")).Put([]byte("h-1"), []byte(`{"id":"h-1","bucket":1}`))
	}))
	require.NoError(t, b.Close())

	db, err := fleetdb.Open(dir, fleetdb.Options{Timeout: time.Second})
	require.NoError(t, err)
	st, err := db.Load()
	require.NoError(t, err)
	require.Len(t, st.Hosts, 1)
	require.NoError(t, db.Close())
	b, err = bolt.Open(dir+"/"+fleetdb.FileName, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer b.Close()
	require.NoError(t, b.View(func(tx *bolt.Tx) error {
		require.Nil(t, tx.Bucket([]byte("events")), "the event ids are gone")
		require.Equal(t, "2", string(tx.Bucket([]byte("meta")).Get([]byte("schema"))))
		return nil
	}))
}

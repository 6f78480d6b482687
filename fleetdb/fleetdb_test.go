package fleetdb_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/ringfence/ringfence/fleetdb"
	"github.com/ringfence/ringfence/fleetdb/storetest"
	"github.com/ringfence/ringfence/internal/testtmp"
)

// TestStore: server.db keeps the contract of every state store
// (fleetdb/storetest; fleetpg runs it too).
func TestStore(t *testing.T) {
	storetest.Run(t, storetest.Config{
		ErrLocked: fleetdb.ErrLocked,
		Create: func(t *testing.T) storetest.Open {
			dir := testtmp.Dir(t)
			return func(wait time.Duration) (storetest.Store, error) {
				return fleetdb.Open(dir, fleetdb.Options{Timeout: wait})
			}
		},
	})
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

// Package fleetdb is ringfence-server's embedded store, <state>/server.db
// (bbolt): the hosts as they reported, every channel's rollout with its
// decisions and gate evidence, and the telemetry event ids already taken
// (the idempotency keys). A restart loads it and every rollout resumes
// where it was.
//
// Sync policy: every telemetry batch and every decision is one bbolt
// transaction, committed with fsync before the server answers, so an event
// the server acknowledged is never lost and an acknowledged decision is
// never forgotten.
//
// # Layout
//
//	meta      "schema" -> schema version (JSON number)
//	hosts     host id -> controller.Host (JSON)
//	rollouts  4-byte big-endian channel -> controller.Rollout (JSON)
//	events    host id, 0x00, event id -> 8-byte big-endian arrival (unix seconds)
//
// Values are JSON so `bbolt get` shows them to an operator in a crisis.
package fleetdb

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/ringfence/ringfence/controller"
)

// FileName is the database's name in the state directory.
const FileName = "server.db"

// schemaVersion is the layout above; Open refuses a newer one.
const schemaVersion = 1

// Retention of event ids: a host that resends an event older than this is
// counted again (the controller counts a host's failure once per rollout
// anyway).
const Retention = 60 * 24 * time.Hour

// ErrLocked is returned by Open when another process (a running server)
// holds the database.
var ErrLocked = errors.New("fleetdb: the state directory is in use by a running ringfence-server; talk to it with --server, or stop it")

var (
	bucketMeta     = []byte("meta")
	bucketHosts    = []byte("hosts")
	bucketRollouts = []byte("rollouts")
	bucketEvents   = []byte("events")
	keySchema      = []byte("schema")
)

// DB is an open server.db.
type DB struct{ db *bolt.DB }

// Open opens (creating) dir/server.db. It fails with ErrLocked within
// timeout when another process has it open.
func Open(dir string, timeout time.Duration) (*DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("fleetdb: state directory: %w", err)
	}
	b, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{Timeout: timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, ErrLocked
	}
	if err != nil {
		return nil, fmt.Errorf("fleetdb: open %s: %w", filepath.Join(dir, FileName), err)
	}
	db := &DB{db: b}
	err = b.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketHosts, bucketRollouts, bucketEvents} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keySchema); v != nil {
			var n int
			if err := json.Unmarshal(v, &n); err != nil || n > schemaVersion {
				return fmt.Errorf("fleetdb: %s has schema %s; this server knows %d: upgrade ringfence-server", FileName, v, schemaVersion)
			}
			return nil
		}
		return meta.Put(keySchema, []byte(fmt.Sprint(schemaVersion)))
	})
	if err != nil {
		b.Close()
		return nil, err
	}
	return db, nil
}

// Close closes the database.
func (db *DB) Close() error { return db.db.Close() }

func channelKey(ch uint32) []byte { return binary.BigEndian.AppendUint32(nil, ch) }

// Load reads every host and rollout.
func (db *DB) Load() ([]*controller.Host, []*controller.Rollout, error) {
	var hosts []*controller.Host
	var rollouts []*controller.Rollout
	err := db.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketHosts).ForEach(func(k, v []byte) error {
			h := new(controller.Host)
			if err := json.Unmarshal(v, h); err != nil {
				return fmt.Errorf("fleetdb: host %q: %w", k, err)
			}
			hosts = append(hosts, h)
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketRollouts).ForEach(func(k, v []byte) error {
			r := new(controller.Rollout)
			if err := json.Unmarshal(v, r); err != nil {
				return fmt.Errorf("fleetdb: rollout of channel %x: %w", k, err)
			}
			rollouts = append(rollouts, r)
			return nil
		})
	})
	return hosts, rollouts, err
}

func eventKey(host, id string) []byte {
	k := make([]byte, 0, len(host)+1+len(id))
	k = append(append(append(k, host...), 0), id...)
	return k
}

// Fresh returns which of a host's event ids the store has not taken yet.
func (db *DB) Fresh(host string, ids []string) ([]bool, error) {
	out := make([]bool, len(ids))
	err := db.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		for i, id := range ids {
			out[i] = b.Get(eventKey(host, id)) == nil
		}
		return nil
	})
	return out, err
}

// Commit stores, in one transaction: the event ids taken from host (at
// now), and the hosts and rollouts that changed.
func (db *DB) Commit(host string, ids []string, now time.Time, ch controller.Changes) error {
	return db.db.Update(func(tx *bolt.Tx) error {
		ev := tx.Bucket(bucketEvents)
		stamp := binary.BigEndian.AppendUint64(nil, uint64(now.Unix()))
		for _, id := range ids {
			if err := ev.Put(eventKey(host, id), stamp); err != nil {
				return err
			}
		}
		hb := tx.Bucket(bucketHosts)
		for _, h := range ch.Hosts {
			v, err := json.Marshal(h)
			if err != nil {
				return err
			}
			if err := hb.Put([]byte(h.ID), v); err != nil {
				return err
			}
		}
		rb := tx.Bucket(bucketRollouts)
		for _, r := range ch.Rollouts {
			v, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := rb.Put(channelKey(r.Channel), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// Prune forgets event ids taken before now-Retention and returns how many.
func (db *DB) Prune(now time.Time) (int, error) {
	n := 0
	cut := uint64(now.Add(-Retention).Unix())
	err := db.db.Update(func(tx *bolt.Tx) error {
		// Collect first: deleting under a bbolt cursor skips the next key.
		b := tx.Bucket(bucketEvents)
		var old [][]byte
		if err := b.ForEach(func(k, v []byte) error {
			if len(v) == 8 && binary.BigEndian.Uint64(v) < cut {
				old = append(old, append([]byte(nil), k...))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	return n, err
}

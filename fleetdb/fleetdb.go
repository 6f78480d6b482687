// Package fleetdb is ringfence-server's embedded store, <state>/server.db
// (bbolt): the hosts of the fleet, every channel's rollout with its
// decisions and gate evidence, the keys not (or no longer) in the fleet,
// and the enrolment tokens. A restart loads it and every rollout resumes
// where it was.
//
// Sync policy: every change (a telemetry batch's effects, a decision, an
// admission) is one bbolt transaction, committed with fsync before the
// server shows it, acts on it or answers: the server commits first and
// applies after (server/commit.go).
//
// # Layout (schema 2)
//
//	meta       "schema" -> schema version (JSON number)
//	hosts      host id -> controller.Host (JSON): the admitted hosts
//	rollouts   4-byte big-endian channel -> controller.Rollout (JSON)
//	admission  host id -> admission.Record (JSON): pending, rejected, decommissioned keys
//	tokens     token id -> admission.Token (JSON): enrolment tokens (hashes, not secrets)
//
// Schema 1 had an "events" bucket of event ids taken (60 days of them per
// host); the per-host event seq replaced it, and opening a schema 1 file
// drops it. Values are JSON so `bbolt get` shows them to an operator in a
// crisis.
package fleetdb

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
)

// FileName is the database's name in the state directory.
const FileName = "server.db"

// schemaVersion is the layout above; Open refuses a newer one.
const schemaVersion = 2

// ErrLocked is returned by Open when another process (a running server)
// holds the database.
var ErrLocked = errors.New("fleetdb: the state directory is in use by a running ringfence-server; talk to it with --server, or stop it")

var (
	bucketMeta      = []byte("meta")
	bucketHosts     = []byte("hosts")
	bucketRollouts  = []byte("rollouts")
	bucketAdmission = []byte("admission")
	bucketTokens    = []byte("tokens")
	keySchema       = []byte("schema")

	// buckets are the top-level buckets of the current schema.
	buckets = [][]byte{bucketMeta, bucketHosts, bucketRollouts, bucketAdmission, bucketTokens}
	// bucketEventsV1 is schema 1's event-id bucket, dropped on open.
	bucketEventsV1 = []byte("events")
)

// Close closes the database.
func (db *DB) Close() error { return db.db.Close() }

func channelKey(ch uint32) []byte { return binary.BigEndian.AppendUint32(nil, ch) }

// State is everything the server keeps.
type State struct {
	Hosts    []*controller.Host
	Rollouts []*controller.Rollout
	Records  []*admission.Record
	Tokens   []*admission.Token
}

// Load reads the whole state. A value that does not decode is damage: the
// error wraps ErrDamaged and says what to do.
func (db *DB) Load() (State, error) {
	var st State
	err := db.guard("load", func() error {
		return db.db.View(func(tx *bolt.Tx) error {
			if err := each(db.path, tx, bucketHosts, &st.Hosts); err != nil {
				return err
			}
			if err := each(db.path, tx, bucketRollouts, &st.Rollouts); err != nil {
				return err
			}
			if err := each(db.path, tx, bucketAdmission, &st.Records); err != nil {
				return err
			}
			return each(db.path, tx, bucketTokens, &st.Tokens)
		})
	})
	return st, err
}

// each decodes every value of a bucket into a new element of out.
// A bucket a read-only open of an older schema lacks is empty.
func each[T any](path string, tx *bolt.Tx, bucket []byte, out *[]*T) error {
	b := tx.Bucket(bucket)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error {
		x := new(T)
		if err := json.Unmarshal(v, x); err != nil {
			return damaged(path, "bucket %s, key %.64q: %v", bucket, k, err)
		}
		*out = append(*out, x)
		return nil
	})
}

// Commit stores, in one transaction with fsync, what the controller and
// the registry changed: all of it, or (on an error) nothing.
func (db *DB) Commit(cc controller.Changes, rc admission.Changes) error {
	return db.db.Update(func(tx *bolt.Tx) error {
		hb := tx.Bucket(bucketHosts)
		for _, h := range cc.Hosts {
			if err := put(hb, []byte(h.ID), h); err != nil {
				return err
			}
		}
		for _, id := range cc.Removed {
			if err := hb.Delete([]byte(id)); err != nil {
				return err
			}
		}
		rb := tx.Bucket(bucketRollouts)
		for _, r := range cc.Rollouts {
			if err := put(rb, channelKey(r.Channel), r); err != nil {
				return err
			}
		}
		ab := tx.Bucket(bucketAdmission)
		for _, r := range rc.Records {
			if err := put(ab, []byte(r.ID), r); err != nil {
				return err
			}
		}
		for _, id := range rc.DeletedRecords {
			if err := ab.Delete([]byte(id)); err != nil {
				return err
			}
		}
		tb := tx.Bucket(bucketTokens)
		for _, t := range rc.Tokens {
			if err := put(tb, []byte(t.ID), t); err != nil {
				return err
			}
		}
		return nil
	})
}

func put(b *bolt.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := b.Put(k, raw); err != nil {
		return fmt.Errorf("fleetdb: put %.64q: %w", k, err)
	}
	return nil
}

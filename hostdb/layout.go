package hostdb

import (
	"encoding/json"
	"fmt"
	"hash/crc32"

	bolt "go.etcd.io/bbolt"

	"github.com/ringfence/ringfence/wire"
)

// Top-level buckets and meta keys; see the package documentation.
var (
	bucketMeta       = []byte("meta")
	bucketHistory    = []byte("history")
	bucketQuarantine = []byte("quarantine")
	bucketPins       = []byte("pins")
	bucketOutbox     = []byte("outbox")
	bucketOutboxIDs  = []byte("outbox-ids")

	keySchema = []byte("schema")
)

// bucketSpec describes a top-level bucket for init, which creates it, and
// check, which validates every entry in it.
type bucketSpec struct {
	name []byte
	// keyLen is the length of every key; zero means any.
	keyLen int
	// newValue returns a pointer to decode a value into; nil means values
	// are checked elsewhere.
	newValue func() any
}

// buckets lists every bucket of the current schema. A new concern adds a row.
var buckets = []bucketSpec{
	{name: bucketMeta}, // checked by checkSchema
	{name: bucketHistory, keyLen: 8, newValue: func() any { return new(Transition) }},
	{name: bucketQuarantine, keyLen: 8, newValue: func() any { return new(Quarantine) }},
	{name: bucketPins, keyLen: 4, newValue: func() any { return new(pin) }},
	{name: bucketOutbox, keyLen: 8, newValue: func() any { return new(wire.Event) }},
	{name: bucketOutboxIDs}, // event id -> 8-byte counter; checked by Enqueue
}

// init creates the buckets that are missing and records the schema version.
// Migrations from older schema versions go here.
func (db *DB) init() error {
	return db.update("initialize", func(tx *bolt.Tx) error {
		for _, spec := range buckets {
			if _, err := tx.CreateBucketIfNotExists(spec.name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if meta.Get(keySchema) != nil {
			// check ran before and accepted the version.
			return nil
		}
		v, err := json.Marshal(schemaVersion)
		if err != nil {
			return err
		}
		return meta.Put(keySchema, v)
	})
}

// check reads all of bdb and reports damage as ErrCorrupt and a newer schema
// as ErrSchema. It first walks every bucket itself, under guard, so that a
// damaged page panics or faults where it can be recovered; then it runs
// bbolt's consistency check, which also covers the freelist (a damaged
// freelist would hand out pages still in use and corrupt the next write).
func check(bdb *bolt.DB, path string) error {
	return wrap("check "+path, guard("check "+path, func() error {
		return bdb.View(func(tx *bolt.Tx) error {
			if err := checkSchema(tx); err != nil {
				return err
			}
			known := make(map[string]bucketSpec, len(buckets))
			for _, spec := range buckets {
				known[string(spec.name)] = spec
			}
			err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
				if spec, ok := known[string(name)]; ok {
					return checkBucket(spec, b)
				}
				touchBucket(b)
				return nil
			})
			if err != nil {
				return err
			}
			var first error
			n := 0
			for err := range tx.Check() { // drain: Check's goroutine blocks until read
				if first == nil {
					first = err
				}
				n++
			}
			if first != nil {
				return corruptf("%d problems, the first: %v", n, first)
			}
			return nil
		})
	}))
}

// checkSchema accepts a database without a meta bucket (new, or created by
// an interrupted Open) or with a schema version this package knows.
func checkSchema(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return nil
	}
	raw := meta.Get(keySchema)
	if raw == nil {
		return corruptf("no schema version")
	}
	var v int
	if err := decode(bucketMeta, keySchema, raw, &v); err != nil {
		return err
	}
	switch {
	case v > schemaVersion:
		return fmt.Errorf("%w: found version %d, this ringfence supports up to %d", ErrSchema, v, schemaVersion)
	case v < 1:
		return corruptf("schema version %d", v)
	}
	return nil
}

// checkBucket checks the key length and decodes the value of every entry.
func checkBucket(spec bucketSpec, b *bolt.Bucket) error {
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			return corruptf("bucket %s: unexpected nested bucket %x", spec.name, k)
		}
		if spec.keyLen != 0 && len(k) != spec.keyLen {
			return corruptf("bucket %s: key %x is %d bytes, want %d", spec.name, k, len(k), spec.keyLen)
		}
		if spec.newValue == nil {
			touch(v)
			return nil
		}
		return decode(spec.name, k, v, spec.newValue())
	})
}

// touchBucket reads every key and value of a bucket this version does not
// know (written by a newer one), so that damage in it shows up now.
func touchBucket(b *bolt.Bucket) {
	_ = b.ForEach(func(k, v []byte) error {
		touch(k)
		if v == nil {
			if child := b.Bucket(k); child != nil {
				touchBucket(child)
			}
			return nil
		}
		touch(v)
		return nil
	})
}

// touch reads every byte of p.
func touch(p []byte) { _ = crc32.ChecksumIEEE(p) }

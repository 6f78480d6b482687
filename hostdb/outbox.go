package hostdb

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ringfence/ringfence/wire"
)

// Outbox bounds.
const (
	// MaxOutbox is the number of queued events beyond which the oldest
	// heartbeats, then the oldest other non-critical events, are evicted.
	MaxOutbox = 10_000
	// MaxOutboxCritical is the hard cap: critical events (reverts) are never
	// evicted, so the outbox may exceed MaxOutbox with them up to this; a
	// non-critical event arriving beyond it is dropped and counted.
	MaxOutboxCritical = 2 * MaxOutbox
	// MaxOutboxIDs bounds the ids of deterministic events remembered
	// (queued or sent), the oldest forgotten first.
	MaxOutboxIDs = 1024
)

// OutboxStats describes the outbox.
type OutboxStats struct {
	Queued   int       `json:"queued"`
	Critical int       `json:"critical"`
	Dropped  uint64    `json:"dropped"` // evicted or refused since the database was made
	Oldest   time.Time `json:"oldest,omitzero"`
}

var keyOutboxDropped = []byte("outbox-dropped")

// Enqueue appends ev to the outbox (after the newest) and returns it as
// stored: with an id, a time, a sequence number, and its fields cut to the
// wire's bounds (wire.Event.Bound). When the outbox holds MaxOutbox events
// it first evicts a batch: the oldest heartbeats, then the oldest other
// non-critical events; critical ones stay.
//
// The sequence number is the event's key: the larger of the newest key
// plus one and the time in microseconds since 1970. So it grows within a
// database, and a database made afresh (lost, reset) starts above every
// number the old one gave out as long as the clock did not go back: the
// server, which applies a host's events only above the last seq it
// applied (replay protection), keeps taking them.
//
// An event given its own id (a deterministic one, such as
// "reverted-<channel>-<version>-<reason>") is queued once: the outbox
// remembers the newest MaxOutboxIDs such ids, queued or sent, and Enqueue
// of one of them again changes nothing (the event it returns has Seq 0).
// So a daemon that restarts and sees the same revert in the boot record
// does not report it twice.
func (db *DB) Enqueue(ev wire.Event) (wire.Event, error) {
	deterministic := ev.ID != ""
	if ev.ID == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		ev.ID = hex.EncodeToString(b[:])
	}
	if ev.Time.IsZero() {
		ev.Time = db.clock.Now()
	}
	ev.Time = ev.Time.UTC()
	ev = ev.Bound()
	err := db.update("enqueue", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		if deterministic {
			ids := tx.Bucket(bucketOutboxIDs)
			if ids.Get([]byte(ev.ID)) != nil {
				return nil // queued or sent before
			}
			if err := rememberID(ids, ev.ID); err != nil {
				return err
			}
		}
		// One eviction removes a tenth of the bound, so the scan it needs
		// runs once per batch of enqueues, not per enqueue.
		n := b.Stats().KeyN
		if n >= db.maxOutbox {
			evicted, err := evictOutbox(b, n-db.maxOutbox+max(db.maxOutbox/10, 1))
			if err != nil {
				return err
			}
			n -= evicted
			if err := addDropped(tx, uint64(evicted)); err != nil {
				return err
			}
			if n >= 2*db.maxOutbox && !ev.Critical {
				return addDropped(tx, 1)
			}
		}
		ev.Seq = max(uint64(db.clock.Now().UnixMicro()), 1)
		if k, _ := b.Cursor().Last(); len(k) == 8 {
			ev.Seq = max(ev.Seq, binary.BigEndian.Uint64(k)+1)
		}
		value, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		return b.Put(binary.BigEndian.AppendUint64(nil, ev.Seq), value)
	})
	return ev, err
}

// rememberID adds id to the remembered ids (value: a rising counter),
// forgetting the oldest beyond MaxOutboxIDs.
func rememberID(ids *bolt.Bucket, id string) error {
	n, err := ids.NextSequence()
	if err != nil {
		return err
	}
	if ids.Stats().KeyN >= MaxOutboxIDs {
		var oldest []byte
		low := uint64(1<<64 - 1)
		if err := ids.ForEach(func(k, v []byte) error {
			if len(v) == 8 && binary.BigEndian.Uint64(v) < low {
				low, oldest = binary.BigEndian.Uint64(v), append(oldest[:0], k...)
			}
			return nil
		}); err != nil {
			return err
		}
		if oldest != nil {
			if err := ids.Delete(oldest); err != nil {
				return err
			}
		}
	}
	return ids.Put([]byte(id), binary.BigEndian.AppendUint64(nil, n))
}

// evictOutbox deletes up to n events: heartbeats first, oldest first, then
// other non-critical events.
func evictOutbox(b *bolt.Bucket, n int) (int, error) {
	deleted := 0
	for _, heartbeatsOnly := range []bool{true, false} {
		var victims [][]byte
		err := b.ForEach(func(k, v []byte) error {
			if deleted+len(victims) >= n {
				return nil
			}
			var ev wire.Event
			if err := decode(bucketOutbox, k, v, &ev); err != nil {
				return err
			}
			if !ev.Critical && (!heartbeatsOnly || ev.Kind == wire.EventHeartbeat) {
				victims = append(victims, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return deleted, err
		}
		for _, k := range victims {
			if err := b.Delete(k); err != nil {
				return deleted, err
			}
			deleted++
		}
	}
	return deleted, nil
}

func addDropped(tx *bolt.Tx, n uint64) error {
	if n == 0 {
		return nil
	}
	meta := tx.Bucket(bucketMeta)
	var cur uint64
	if v := meta.Get(keyOutboxDropped); len(v) == 8 {
		cur = binary.BigEndian.Uint64(v)
	}
	return meta.Put(keyOutboxDropped, binary.BigEndian.AppendUint64(nil, cur+n))
}

// Pending returns up to limit queued events, oldest first, each with its
// key as its Seq.
func (db *DB) Pending(limit int) ([]wire.Event, error) {
	var out []wire.Event
	err := db.view("pending", func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
			var ev wire.Event
			if err := decode(bucketOutbox, k, v, &ev); err != nil {
				return err
			}
			ev.Seq = binary.BigEndian.Uint64(k)
			out = append(out, ev)
		}
		return nil
	})
	return out, err
}

// Ack removes the events with the given ids (sent and stored upstream).
// Unknown ids are ignored.
func (db *DB) Ack(ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	return db.update("ack", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		var del [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var ev struct {
				ID string `json:"id"`
			}
			if err := decode(bucketOutbox, k, v, &ev); err != nil {
				return err
			}
			if want[ev.ID] {
				del = append(del, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range del {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// OutboxStats counts the outbox.
func (db *DB) OutboxStats() (OutboxStats, error) {
	var s OutboxStats
	err := db.view("outbox stats", func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyOutboxDropped); len(v) == 8 {
			s.Dropped = binary.BigEndian.Uint64(v)
		}
		return tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
			var ev wire.Event
			if err := decode(bucketOutbox, k, v, &ev); err != nil {
				return err
			}
			if s.Queued == 0 {
				s.Oldest = ev.Time
			}
			s.Queued++
			if ev.Critical {
				s.Critical++
			}
			return nil
		})
	})
	return s, err
}

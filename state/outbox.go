package state

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"
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
	// maxCodes and maxEvidence bound an event's lists; evidence values are
	// cut like reasons.
	maxCodes    = 64
	maxEvidence = 32
)

// OutboxEvent is a telemetry event waiting to be sent upstream.
type OutboxEvent struct {
	// ID is the idempotency key: the server stores an id once. Enqueue
	// makes a random one when it is empty.
	ID       string            `json:"id"`
	Type     string            `json:"type"`
	Time     time.Time         `json:"time"`
	Channel  uint32            `json:"channel,omitempty"`
	Version  uint32            `json:"version,omitempty"`
	Reason   string            `json:"reason,omitempty"`
	Codes    []string          `json:"codes,omitempty"`
	Evidence map[string]string `json:"evidence,omitempty"`
	// Critical events (reverts) are never evicted.
	Critical bool `json:"critical,omitempty"`
}

// OutboxStats describes the outbox.
type OutboxStats struct {
	Queued   int       `json:"queued"`
	Critical int       `json:"critical"`
	Dropped  uint64    `json:"dropped"` // evicted or refused since the database was made
	Oldest   time.Time `json:"oldest,omitzero"`
}

var keyOutboxDropped = []byte("outbox-dropped")

// Enqueue appends ev to the outbox (after the newest) and returns it as
// stored: with an id, a time, and its free text cut to the bounds. When the
// outbox holds MaxOutbox events it first evicts a batch: the oldest
// heartbeats, then the oldest other non-critical events; critical ones stay.
func (db *DB) Enqueue(ev OutboxEvent) (OutboxEvent, error) {
	if ev.ID == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		ev.ID = hex.EncodeToString(b[:])
	}
	if ev.Time.IsZero() {
		ev.Time = db.clock.Now()
	}
	ev.Time = ev.Time.UTC()
	ev.ID, ev.Type, ev.Reason = cut(ev.ID), cut(ev.Type), cut(ev.Reason)
	if len(ev.Codes) > maxCodes {
		ev.Codes = append(ev.Codes[:maxCodes:maxCodes], "...")
	}
	if len(ev.Evidence) > 0 {
		ev2 := make(map[string]string, min(len(ev.Evidence), maxEvidence))
		for k, v := range ev.Evidence {
			if len(ev2) == maxEvidence {
				ev2["truncated"] = "more evidence was dropped"
				break
			}
			ev2[cut(k)] = cut(v)
		}
		ev.Evidence = ev2
	}
	value, err := json.Marshal(ev)
	if err != nil {
		return ev, wrap("enqueue", err)
	}
	err = db.update("enqueue", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
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
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		return b.Put(binary.BigEndian.AppendUint64(nil, seq), value)
	})
	return ev, err
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
			var ev OutboxEvent
			if err := decode(bucketOutbox, k, v, &ev); err != nil {
				return err
			}
			if !ev.Critical && (!heartbeatsOnly || ev.Type == "heartbeat") {
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

// Pending returns up to limit queued events, oldest first.
func (db *DB) Pending(limit int) ([]OutboxEvent, error) {
	var out []OutboxEvent
	err := db.view("pending", func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
			var ev OutboxEvent
			if err := decode(bucketOutbox, k, v, &ev); err != nil {
				return err
			}
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
			var ev OutboxEvent
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

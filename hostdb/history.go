package hostdb

import (
	"encoding/binary"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ringfence/ringfence/wire"
)

// Transition is one change of a content slot's state, as the installer and
// the boot guard see it: staged, activated as trial, marked good, reverted.
type Transition struct {
	// Time is when it happened; Record fills it from the clock if zero.
	Time    time.Time `json:"time"`
	Channel uint32    `json:"channel"`
	Version uint32    `json:"version"`
	// Slot is the content slot, "a" or "b".
	Slot string `json:"slot"`
	// From and To are the slot states before and after.
	From string `json:"from"`
	To   string `json:"to"`
	// Reason says why, in words; Record cuts it to MaxReasonLen bytes.
	Reason string `json:"reason,omitempty"`
}

// Record appends the transitions to the install history, in order, and
// drops the oldest entries beyond MaxHistory, in one transaction (one
// commit, however many transitions).
func (db *DB) Record(ts ...Transition) error {
	values := make([][]byte, len(ts))
	for i, t := range ts {
		if t.Time.IsZero() {
			t.Time = db.clock.Now()
		}
		t.Time = t.Time.UTC()
		t.Reason = cut(t.Reason)
		value, err := json.Marshal(t)
		if err != nil {
			return wrap("record a transition", err)
		}
		values[i] = value
	}
	return db.update("record a transition", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHistory)
		var seq uint64
		for _, value := range values {
			var err error
			if seq, err = b.NextSequence(); err != nil {
				return err
			}
			if err := b.Put(seqKey(seq), value); err != nil {
				return err
			}
		}
		if seq <= db.maxHistory {
			return nil
		}
		// Keys are consecutive sequence numbers, so normally exactly one
		// key falls out per transition. Collect before deleting: deleting
		// under a cursor makes it skip keys.
		oldest := seq - db.maxHistory // keep keys above this
		var drop [][]byte
		c := b.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= oldest; k, _ = c.Next() {
			drop = append(drop, k)
		}
		for _, k := range drop {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// History returns up to limit transitions, newest first; limit <= 0 means
// all that are kept.
func (db *DB) History(limit int) ([]Transition, error) {
	var out []Transition
	err := db.view("read the history", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHistory)
		if b == nil { // read-only open of a database never initialized
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Prev() {
			var t Transition
			if err := decode(bucketHistory, k, v, &t); err != nil {
				return err
			}
			out = append(out, t)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// seqKey encodes a history sequence number as its key.
func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, seq)
}

// cut shortens s to at most MaxReasonLen bytes without splitting a UTF-8
// sequence.
func cut(s string) string { return wire.Cut(s, MaxReasonLen) }

package hostdb

import (
	"encoding/binary"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Quarantine is a content version that was reverted on this host. The host
// never stages a quarantined version again on its own; the entry goes when a
// newer version of the channel is installed (the caller removes it) or an
// admin removes it.
type Quarantine struct {
	Channel uint32 `json:"channel"`
	Version uint32 `json:"version"`
	// Reason says why it was reverted; Quarantine cuts it to MaxReasonLen
	// bytes.
	Reason string `json:"reason"`
	// Time is when it was quarantined; Quarantine fills it from the clock
	// if zero.
	Time time.Time `json:"time"`
}

// Quarantine adds q to the quarantine list, replacing an entry for the same
// channel and version. Beyond MaxQuarantined entries the oldest is dropped.
func (db *DB) Quarantine(q Quarantine) error {
	if q.Time.IsZero() {
		q.Time = db.clock.Now()
	}
	q.Time = q.Time.UTC()
	q.Reason = cut(q.Reason)
	value, err := json.Marshal(q)
	if err != nil {
		return wrap("quarantine", err)
	}
	return db.update("quarantine", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketQuarantine)
		if err := b.Put(quarantineKey(q.Channel, q.Version), value); err != nil {
			return err
		}
		if countKeys(b) <= db.maxQuarantined {
			return nil
		}
		return dropOldestQuarantine(b)
	})
}

// dropOldestQuarantine deletes the entry with the oldest time.
func dropOldestQuarantine(b *bolt.Bucket) error {
	var oldestKey []byte
	var oldest time.Time
	err := b.ForEach(func(k, v []byte) error {
		var q Quarantine
		if err := decode(bucketQuarantine, k, v, &q); err != nil {
			return err
		}
		if oldestKey == nil || q.Time.Before(oldest) {
			oldestKey, oldest = k, q.Time
		}
		return nil
	})
	if err != nil || oldestKey == nil {
		return err
	}
	return b.Delete(oldestKey)
}

// countKeys returns the number of keys in b. Unlike b.Stats, it sees the
// changes of the current transaction.
func countKeys(b *bolt.Bucket) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

// IsQuarantined reports whether version of channel is quarantined.
func (db *DB) IsQuarantined(channel, version uint32) (bool, error) {
	var found bool
	err := db.view("read the quarantine list", func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketQuarantine); b != nil {
			found = b.Get(quarantineKey(channel, version)) != nil
		}
		return nil
	})
	return found, err
}

// Unquarantine removes version of channel from the quarantine list. Removing
// an entry that does not exist is not an error.
func (db *DB) Unquarantine(channel, version uint32) error {
	return db.update("unquarantine", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQuarantine).Delete(quarantineKey(channel, version))
	})
}

// Quarantined returns the quarantine list, ordered by channel, then version.
func (db *DB) Quarantined() ([]Quarantine, error) {
	var out []Quarantine
	err := db.view("read the quarantine list", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketQuarantine)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var q Quarantine
			if err := decode(bucketQuarantine, k, v, &q); err != nil {
				return err
			}
			out = append(out, q)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// quarantineKey is channel, then version, big-endian.
func quarantineKey(channel, version uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, channel), version)
}

package hostdb

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// pin is the stored value of a pin. It is a struct, not a bare number, so
// that fields can be added.
type pin struct {
	Version uint32 `json:"version"`
}

// SetPin pins channel to version, replacing an earlier pin. A new pin beyond
// MaxPins returns ErrFull.
func (db *DB) SetPin(channel, version uint32) error {
	value, err := json.Marshal(pin{Version: version})
	if err != nil {
		return wrap("pin", err)
	}
	return db.update("pin", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPins)
		key := channelKey(channel)
		if b.Get(key) == nil && countKeys(b) >= db.maxPins {
			return fmt.Errorf("%w: %d pins", ErrFull, db.maxPins)
		}
		return b.Put(key, value)
	})
}

// Pin returns the version channel is pinned to, and reports whether it is
// pinned at all.
func (db *DB) Pin(channel uint32) (version uint32, ok bool, err error) {
	err = db.view("read a pin", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPins)
		if b == nil {
			return nil
		}
		key := channelKey(channel)
		v := b.Get(key)
		if v == nil {
			return nil
		}
		var p pin
		if err := decode(bucketPins, key, v, &p); err != nil {
			return err
		}
		version, ok = p.Version, true
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return version, ok, nil
}

// Pins returns every pin: the pinned version by channel.
func (db *DB) Pins() (map[uint32]uint32, error) {
	pins := make(map[uint32]uint32)
	err := db.view("read the pins", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPins)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var p pin
			if err := decode(bucketPins, k, v, &p); err != nil {
				return err
			}
			pins[binary.BigEndian.Uint32(k)] = p.Version
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return pins, nil
}

// ClearPin removes the pin of channel. Clearing a channel that is not pinned
// is not an error.
func (db *DB) ClearPin(channel uint32) error {
	return db.update("clear a pin", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPins).Delete(channelKey(channel))
	})
}

// channelKey is the channel, big-endian.
func channelKey(channel uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, channel)
}

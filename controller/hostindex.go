package controller

import "hash/maphash"

// hostIndex finds a host's record by id. It is a hash table of record
// positions (open addressing, linear probing) whose slots hold 8 bytes: 32
// bits of the id's hash and the record's position, where a Go map from id
// to position costs some 50 bytes a host, a quarter of what a leader may
// hold per host. The ids are the records' own; the hash bits spare a look
// at a record that is not the one sought, and a rehash.
type hostIndex struct {
	seed  maphash.Seed
	slots []uint64 // hash<<32 | position+1; 0: empty
	n     int
}

func newHostIndex(hint int) hostIndex {
	size := 8
	for size/4*3 < hint {
		size *= 2
	}
	return hostIndex{seed: maphash.MakeSeed(), slots: make([]uint64, size)}
}

func (x *hostIndex) hash(id string) uint64 { return maphash.String(x.seed, id) >> 32 << 32 }

// lookup returns id's slot, or the empty slot where it would go.
func (x *hostIndex) lookup(recs []hostRec, id string, hash uint64) (int, bool) {
	mask := len(x.slots) - 1
	for s := int(hash>>32) & mask; ; s = (s + 1) & mask {
		v := x.slots[s]
		if v == 0 {
			return s, false
		}
		if v&^0xffffffff == hash && recs[uint32(v)-1].id == id {
			return s, true
		}
	}
}

// get returns the position of id's record, or -1.
func (x *hostIndex) get(recs []hostRec, id string) int {
	s, ok := x.lookup(recs, id, x.hash(id))
	if !ok {
		return -1
	}
	return int(uint32(x.slots[s])) - 1
}

// set records that id's record is at position i: recs holds every
// indexed record (a new one need not be in it yet).
func (x *hostIndex) set(recs []hostRec, id string, i int) {
	hash := x.hash(id)
	s, ok := x.lookup(recs, id, hash)
	if !ok {
		if (x.n+1)*4 > len(x.slots)*3 {
			x.grow()
			s, _ = x.lookup(recs, id, hash)
		}
		x.n++
	}
	x.slots[s] = hash | uint64(uint32(i+1))
}

// grow doubles the table.
func (x *hostIndex) grow() {
	old := x.slots
	x.slots = make([]uint64, 2*len(old))
	mask := len(x.slots) - 1
	for _, v := range old {
		if v == 0 {
			continue
		}
		s := int(v>>32) & mask
		for x.slots[s] != 0 {
			s = (s + 1) & mask
		}
		x.slots[s] = v
	}
}

// del takes id out of the index (recs still holds its record). The
// entries after it in its run move back, so that lookups still find them
// (no tombstones).
func (x *hostIndex) del(recs []hostRec, id string) {
	s, ok := x.lookup(recs, id, x.hash(id))
	if !ok {
		return
	}
	x.n--
	mask := len(x.slots) - 1
	for j := (s + 1) & mask; x.slots[j] != 0; j = (j + 1) & mask {
		h := int(x.slots[j]>>32) & mask
		// The entry at j may fill the hole at s unless its home lies
		// cyclically in (s, j].
		if s < j && (h <= s || h > j) || j < s && h <= s && h > j {
			x.slots[s] = x.slots[j]
			s = j
		}
	}
	x.slots[s] = 0
}

package bootguard

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Sizes of the boot record file (docs/boot-record.md has the full layout).
const (
	// CopySize is the size of one copy of the record: one disk sector.
	CopySize = 512
	// FileSize is the size of the record file: two copies.
	FileSize = 2 * CopySize
	// FormatVersion is the layout version this package reads and writes.
	FormatVersion = 1
)

// Byte offsets within a copy.
const (
	offMagic    = 0  // "RFBR"
	offVersion  = 4  // u16
	offSize     = 6  // u16, CopySize
	offSeq      = 8  // u64
	offActive   = 16 // u8 Slot
	offFallback = 17 // u8 Slot
	// 18..31 reserved, written as zero, ignored on read
	offSlots  = 32 // two slot entries of entrySize bytes, A then B
	entrySize = 64
	// offSlots+2*entrySize .. offCRC reserved, written as zero, ignored on read
	offCRC = CopySize - 4 // u32 CRC32C (Castagnoli) of bytes 0..offCRC
)

// Byte offsets within a slot entry.
const (
	entChannel   = 0  // u32
	entVersion   = 4  // u32
	entDigest    = 8  // [32]byte SHA-256 of the slot manifest
	entState     = 40 // u8 State
	entTries     = 41 // u8 boots left in the trial
	entLoadTries = 42 // u8 crashes-while-loading left in the trial
	entCrumb     = 43 // u8 Crumb
	entReason    = 44 // u8 Reason
	// 45..63 reserved
)

var magic = [4]byte{'R', 'F', 'B', 'R'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Slot names an A/B content slot. SlotNone means no slot.
type Slot uint8

// The slots.
const (
	SlotNone Slot = 0
	SlotA    Slot = 1
	SlotB    Slot = 2
)

// Other returns the other slot of the pair (SlotNone for SlotNone).
func (s Slot) Other() Slot {
	switch s {
	case SlotA:
		return SlotB
	case SlotB:
		return SlotA
	}
	return SlotNone
}

// String returns "a", "b" or "-".
func (s Slot) String() string {
	switch s {
	case SlotA:
		return "a"
	case SlotB:
		return "b"
	case SlotNone:
		return "-"
	}
	return fmt.Sprintf("slot(%d)", uint8(s))
}

// ParseSlot reads "a" or "b".
func ParseSlot(s string) (Slot, error) {
	switch s {
	case "a", "A":
		return SlotA, nil
	case "b", "B":
		return SlotB, nil
	}
	return SlotNone, fmt.Errorf("bootguard: unknown slot %q; use a or b", s)
}

// State is the state of a slot's content.
type State uint8

// The slot states. Only GOOD and TRIAL content is ever loaded.
const (
	StateEmpty  State = 0 // nothing, or a stage in progress
	StateStaged State = 1 // written and verified, not yet activated
	StateTrial  State = 2 // active, on trial: loads, with a bounded number of tries
	StateGood   State = 3 // last-known-good
	StateBad    State = 4 // reverted; never loaded again
)

var stateNames = [...]string{"EMPTY", "STAGED", "TRIAL", "GOOD", "BAD"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Crumb is the breadcrumb the loader leaves around a trial load.
type Crumb uint8

// The breadcrumbs.
const (
	CrumbNone    Crumb = 0
	CrumbLoading Crumb = 1 // written before the load; still there at the next boot means the load crashed
	CrumbLoaded  Crumb = 2 // the load finished and the agent survived its first events
	// CrumbStopped: after a finished load, the agent stopped cleanly (it
	// no longer ran the content when this was written). The next boot
	// loads the trial again without spending a try.
	CrumbStopped Crumb = 3
)

var crumbNames = [...]string{"NONE", "LOADING", "LOADED", "STOPPED"}

func (c Crumb) String() string {
	if int(c) < len(crumbNames) {
		return crumbNames[c]
	}
	return fmt.Sprintf("crumb(%d)", uint8(c))
}

// Reason says why a slot is BAD.
type Reason uint8

// The reasons.
const (
	ReasonNone           Reason = 0
	ReasonLoadCrash      Reason = 1 // the host crashed while loading the trial (breadcrumb evidence)
	ReasonTriesExhausted Reason = 2 // the trial used up its boots without being marked good
	ReasonManual         Reason = 3 // an operator reverted it
	ReasonHealthFailed   Reason = 4 // the daemon's health window failed
	ReasonRecovered      Reason = 5 // offline recovery moved away from it
	ReasonCorrupt        Reason = 6 // the slot's files did not match its manifest
)

var reasonNames = [...]string{"none", "load-crash", "tries-exhausted", "manual", "health-failed", "recovered", "corrupt"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Entry is what the record says about one slot.
type Entry struct {
	Channel uint32
	Version uint32
	// Digest is the SHA-256 of the slot's manifest, which pins every file.
	Digest [32]byte
	State  State
	// Tries is the number of boots the trial has left.
	Tries uint8
	// LoadTries is the number of crashes while loading the trial may still
	// suffer before it is reverted.
	LoadTries uint8
	Crumb     Crumb
	Reason    Reason
}

// Record is one copy of the boot record.
type Record struct {
	// Seq orders the copies: a reader takes the valid copy that is Newer.
	// Every value is valid, and it wraps: the write after 2^64-1 is 0.
	Seq      uint64
	Active   Slot
	Fallback Slot
	// Slots holds the entries of slot A (index 0) and slot B (index 1).
	Slots [2]Entry
}

// Entry returns a pointer to the entry of slot s (A or B).
func (r *Record) Entry(s Slot) *Entry {
	if s != SlotA && s != SlotB {
		panic(fmt.Sprintf("bootguard: Entry(%v)", s))
	}
	return &r.Slots[s-1]
}

// Encode returns the 512 bytes of r, CRC included.
func (r *Record) Encode() [CopySize]byte {
	var b [CopySize]byte
	copy(b[offMagic:], magic[:])
	binary.LittleEndian.PutUint16(b[offVersion:], FormatVersion)
	binary.LittleEndian.PutUint16(b[offSize:], CopySize)
	binary.LittleEndian.PutUint64(b[offSeq:], r.Seq)
	b[offActive] = byte(r.Active)
	b[offFallback] = byte(r.Fallback)
	for i, e := range r.Slots {
		p := b[offSlots+i*entrySize:]
		binary.LittleEndian.PutUint32(p[entChannel:], e.Channel)
		binary.LittleEndian.PutUint32(p[entVersion:], e.Version)
		copy(p[entDigest:], e.Digest[:])
		p[entState] = byte(e.State)
		p[entTries] = e.Tries
		p[entLoadTries] = e.LoadTries
		p[entCrumb] = byte(e.Crumb)
		p[entReason] = byte(e.Reason)
	}
	binary.LittleEndian.PutUint32(b[offCRC:], crc32.Checksum(b[:offCRC], castagnoli))
	return b
}

// DecodeCopy parses one copy. It reports false for anything that is not a
// complete, intact copy of this format version: short, wrong magic, version
// or size, CRC mismatch, or an enumeration out of range. Every sequence
// number is valid (see Newer).
func DecodeCopy(b []byte) (Record, bool) {
	if len(b) < CopySize {
		return Record{}, false
	}
	b = b[:CopySize]
	if [4]byte(b[offMagic:offMagic+4]) != magic ||
		binary.LittleEndian.Uint16(b[offVersion:]) != FormatVersion ||
		binary.LittleEndian.Uint16(b[offSize:]) != CopySize ||
		binary.LittleEndian.Uint32(b[offCRC:]) != crc32.Checksum(b[:offCRC], castagnoli) {
		return Record{}, false
	}
	r := Record{
		Seq:      binary.LittleEndian.Uint64(b[offSeq:]),
		Active:   Slot(b[offActive]),
		Fallback: Slot(b[offFallback]),
	}
	if r.Active > SlotB || r.Fallback > SlotB {
		return Record{}, false
	}
	for i := range r.Slots {
		p := b[offSlots+i*entrySize:]
		e := &r.Slots[i]
		e.Channel = binary.LittleEndian.Uint32(p[entChannel:])
		e.Version = binary.LittleEndian.Uint32(p[entVersion:])
		copy(e.Digest[:], p[entDigest:entDigest+32])
		e.State = State(p[entState])
		e.Tries = p[entTries]
		e.LoadTries = p[entLoadTries]
		e.Crumb = Crumb(p[entCrumb])
		e.Reason = Reason(p[entReason])
		if e.State > StateBad || e.Crumb > CrumbStopped || e.Reason > ReasonCorrupt {
			return Record{}, false
		}
	}
	return r, true
}

// Newer reports whether sequence number a is newer than b, in serial-number
// arithmetic over the whole uint64 space (RFC 1982 style): a is newer when
// a - b, modulo 2^64, is in [1, 2^63). So 0 is newer than 2^64-1, and a
// writer never runs out of sequence numbers. Numbers that are equal, or
// exactly 2^63 apart, are neither newer than the other; Pick then takes
// copy 0.
//
// Any pair of copies is safe to order this way, because every write is
// relative to the copy picked: the writer puts the picked copy's sequence + 1
// into the other copy. The two copies of a file an honest writer wrote differ
// by 1, and the copy just written is the one picked next. A corrupted or
// forged copy that passes the CRC with any sequence number can be picked at
// most until the next write, which then goes over the other copy with that
// copy's sequence + 1 and is picked after it: it cannot shadow later writes.
// The C loader's rfbr_seq_newer is the same function.
func Newer(a, b uint64) bool {
	d := a - b
	return d != 0 && d < 1<<63
}

// Pick chooses the current record from the bytes of a record file (which may
// be short or damaged): the valid copy that is Newer, copy 0 when neither
// is. It returns the record, the index of the copy it came from, and false
// when neither copy is valid.
func Pick(file []byte) (rec Record, from int, ok bool) {
	r0, ok0 := DecodeCopy(file)
	var r1 Record
	ok1 := false
	if len(file) > CopySize {
		r1, ok1 = DecodeCopy(file[CopySize:])
	}
	switch {
	case ok0 && ok1 && Newer(r1.Seq, r0.Seq), !ok0 && ok1:
		return r1, 1, true
	case ok0:
		return r0, 0, true
	}
	return Record{}, 0, false
}

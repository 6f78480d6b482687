package hostdb

import "errors"

var (
	// ErrCorrupt is returned when state.db is not a readable bbolt database,
	// fails bbolt's consistency check, holds a value that does not decode,
	// or makes bbolt panic. OpenOrReset moves such a file aside and starts
	// a fresh one; the boot record, not state.db, decides what loads.
	ErrCorrupt = errors.New("hostdb: database is corrupt")

	// ErrLocked is returned when another process (or another DB in this
	// process) holds state.db and the lock was not released within
	// Options.Timeout.
	ErrLocked = errors.New("hostdb: database is locked by another process (is ringfenced running?)")

	// ErrReadOnly is returned when a method that writes is called on a DB
	// opened with Options.ReadOnly.
	ErrReadOnly = errors.New("hostdb: database is open read-only")

	// ErrSchema is returned when state.db was written by a newer Ringfence
	// with a schema version this one does not know. The file is left alone
	// so that the newer version can still use it.
	ErrSchema = errors.New("hostdb: database schema is newer than this ringfence supports; upgrade ringfence")

	// ErrFull is returned when SetPin would store more than MaxPins pins.
	ErrFull = errors.New("hostdb: too many pins; clear the pins of unused channels first")
)

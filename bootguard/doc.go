// Package bootguard owns the boot record, the single source of truth for which
// content slot the loader loads next, and implements the loader contract of
// docs/design.md: a host that crashes while loading trial content comes back on
// last-known-good by itself at the next boot, and never retries that content.
//
// The record is a file of two fixed-size 512-byte copies (docs/boot-record.md
// has the byte layout). A writer overwrites, in place, the copy that does not
// hold the current record and syncs; a reader takes the valid copy with the
// highest sequence number. There is no rename, so a kernel driver can read and
// write the file; bootguard/c is the same logic in C for such a driver, and the
// vectors in testdata/bootrecord keep the two in agreement.
//
// Decide is the contract as a pure function of the record. Select runs it
// against the file: read, decide, write what the decision needs durably, and
// only then return the slot to load.
package bootguard

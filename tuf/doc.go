// Package tuf is the host's TUF client. It follows the client workflow of
// the TUF specification (section 5) step by step: root rotations,
// timestamp, snapshot, targets, and any delegation graph a target lookup
// walks (nested, terminating, path patterns, classic and succinct hashed
// bins). go-tuf/v2's trustedmetadata verifies each step; this package
// drives the steps, fetches bounded, and persists under <root>/tuf.
//
// Why not go-tuf's updater: it persists through its own cache, which does
// not fsync, and the daemon needs every write durable; a refresh in a
// scratch directory (what this package did before) keeps nothing of a
// refresh that fails at a later step and cannot load delegations later;
// the updater returns a delegated role it already loaded by name, whichever
// delegator asks for it; and go-tuf 2.4 matches path_hash_prefixes against
// the base64 of the path's hash where the specification says hex. Driving
// trustedmetadata directly fixes the four and keeps its verification.
//
// Each role is persisted, through the durable-write helper, as soon as it
// verified (5.3.8, 5.4.5, 5.5.7, 5.6.6): a new root at once, before its
// expiry is checked, so a rotation that drops compromised keys holds even
// when a later step fails; the timestamp and snapshot as the rollback
// baseline; targets and delegated roles, also those loaded during a
// download. A persisted delegated role is trusted again only if it
// verifies against its delegator's current keys.
//
// Downloads are bounded by the signed length, resumable (HTTP Range, from a
// partial directory), and verified against every signed hash the client
// knows (sha256, sha384, sha512) before the file gets its final name.
//
// Expiry is checked against Options.Clock. A host clock far ahead makes
// valid metadata look expired (ErrExpired: nothing new installs, the current
// content keeps running); a clock behind accepts metadata that has expired,
// so a frozen mirror goes unnoticed for as long as the clock lags. Rollback
// protection does not depend on the clock.
package tuf

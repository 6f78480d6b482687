// Package tuf is the host's TUF client: it wraps go-tuf/v2 so that the daemon
// refreshes signed metadata (timestamp, snapshot, targets, the content and
// rollout delegations) from the installed trusted root, persists it under
// <root>/tuf with durable writes, and downloads targets bounded, resumable and
// verified for length and hash before anything else sees them.
//
// Every refresh uses a fresh go-tuf Updater (its Refresh runs once per
// Updater) working in a scratch directory; only a refresh that verified is
// copied into <root>/tuf, root first and timestamp last, through the
// durable-write helper (go-tuf's own cache does not fsync).
//
// Expiry is checked against Options.Clock. A host clock far ahead makes
// valid metadata look expired (ErrExpired: nothing new installs, the current
// content keeps running); a clock behind accepts metadata that has expired,
// so a frozen mirror goes unnoticed for as long as the clock lags. Rollback
// protection does not depend on the clock.
package tuf

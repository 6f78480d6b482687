// Package tuf is the host's TUF client: it wraps go-tuf/v2 so that the daemon
// refreshes signed metadata (timestamp, snapshot, targets, the content and
// rollout delegations) from the installed trusted root, persists it under
// <root>/tuf with durable writes, and downloads targets bounded, resumable and
// verified for length and hash before anything else sees them.
package tuf

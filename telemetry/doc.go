// Package telemetry is the host side of the upstream reporting: the host's
// ed25519 identity, the versioned wire format (docs/telemetry.md), the
// server's check of a received batch (VerifyBatch), and the Sender that
// ships state.db's outbox at least once, with idempotency keys, in signed
// batches, backing off exponentially with full jitter when the server or
// the network fails.
package telemetry

// Package telemetry is the host side of the upstream reporting: the host's
// ed25519 identity, and the Sender that ships state.db's outbox at least
// once, in signed batches of the wire format (package wire), with the
// enrolment token until the server admits the host, backing off
// exponentially with full jitter when the server or the network fails and
// as the server asks while the host waits for admission.
package telemetry

// Package tufrepo is the repository side of Ringfence's TUF: it creates a
// repository (root, targets, snapshot, timestamp, and the delegated content
// and rollout roles) with its keys, publishes channel files as content
// targets, signs rollout plans with the rollout role, rotates keys, refreshes
// expiring metadata and verifies the result the way a client would. The
// output is a plain static directory (metadata/ and targets/, consistent
// snapshots on) that any web server can serve and any TUF client can read.
package tufrepo

// Package powercut runs the real code paths of a host and a server on a file
// system that records every write and every fsync (internal/lazyfs), then
// checks what a power cut at each point of that record could leave on disk.
//
// A scenario is one durable operation (a stage, an activation, the loader's
// boot, a revert, the daemon's whole update loop, a publish, ...) run from a
// prepared state. Run records it once, then for every cut point (after each
// recorded change, the first included) builds the states the disk may hold:
// only what was made durable (the LazyFS cut), everything written (what a
// kill leaves), and random subsets of the changes not yet durable (a disk
// that wrote some of them back, in any order). Each distinct state is
// materialized in a directory of its own and handed to the scenario's check,
// which opens it with the real installer, loader, TUF client or server and
// checks the invariants of docs/boot-record.md ("Power cuts").
//
// The harness needs FUSE (/dev/fuse, root); make test-powercut runs it.
package powercut

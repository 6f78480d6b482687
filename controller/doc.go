// Package controller is the rollout controller of ringfence-server: it
// keeps the fleet (the hosts admitted, with the fleet and tags the server
// recorded for them, and what each reported), moves each channel's rollout
// ring by ring, and decides, from the hosts' reports and the sequential
// test of package gate, whether a stage advances, waits, halts or rolls
// back. Every decision is kept with its evidence.
//
// The controller is pure logic: it does no I/O and reads no clock. The
// server feeds it batches and the time; every change is tentative until
// the server has committed what Changes returns (package fleetdb) and calls
// Settle, or puts it back with Undo when the commit failed; the server then
// signs the plans that changed (Plan). The fleet simulator drives the
// rollout's decisions (Rollout.Observe, Step) with a modelled fleet.
//
// A host's report counts toward a rollout only where the plan gave the new
// version to the host's stage; a host's stage follows from its bucket and
// the hosts the stage names, resolved from the server's tags (never from
// what a host says), and the signed plan names those hosts by id.
//
// The rules, in the order they apply at each evaluation of a running
// rollout (docs/gate.md has the reasoning):
//  1. A revert or a rejection of the new version reported by a host of the
//     canary group halts at once: the canary group is hand-picked, and one
//     crash-on-load there is the 2024 failure.
//  2. Failures since the last evaluation (reverts, sensor crashes,
//     rejections; silence: any host not heard from for the silence window,
//     judged alike on both sides; and a treated host heard from that has
//     not reported healthy by the end of its health window and grace) feed
//     the gate; the gate rejecting halts.
//  3. A halt rolls back (unless AutoRollback is off): the plan sends every
//     host to the version the rollout started from, and the bad version
//     joins the channel's deny list, which hosts honour.
//  4. Otherwise the stage advances when its bake time has passed and the
//     minimum number of hosts of the stage (or every host of the stage, when
//     it has fewer) reported healthy on the new version; after the last
//     stage the rollout completes.
package controller

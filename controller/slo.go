package controller

import "time"

// Breach halts the channel's rollout of version to on a breached SLO check
// (package slo; reason is slo.Breach's String, "SLO check NAME breached:
// ..."), the way the gate halts it: with actor "gate", so that it rolls
// back at once unless the rollout was started with ManualRollback. Only a
// running or paused rollout of that version halts; for any other (the
// gate halted it in the same evaluation, an operator rolled it back and
// started another while the queries ran) it decides nothing.
//
// An SLO breach is a deterministic rule, like the canary rule, not a
// statistical test: it is outside the gate's false-halt bound alpha
// (docs/slo.md). The queries are the server's to run; the controller
// stays free of I/O.
func (c *Controller) Breach(channel, to uint32, reason string, now time.Time) []Decision {
	r, ok := c.rollouts[channel]
	if !ok || r.To != to || r.State != StateRunning && r.State != StatePaused {
		return nil
	}
	c.touchRollout(channel)
	return c.note(r, r.Halt(now, "gate", reason, ""))
}

package daemon

import (
	"errors"
	"time"
)

// usage is what a process has cost, measured from outside it: the
// operating system's own accounting, which the process cannot misstate.
type usage struct {
	CPU time.Duration // user and system time of all its threads, since it started
	RSS uint64        // resident memory now, bytes
}

// usage measures p's process; errors.ErrUnsupported where the platform
// cannot (p is nil then).
func (p *proc) usage() (usage, error) {
	if p == nil {
		return usage{}, errors.ErrUnsupported
	}
	return p.read()
}

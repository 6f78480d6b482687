package daemon

import (
	"errors"
	"os"
)

// interrupt: Windows has no signal a child without a console can catch, so
// the agent is killed; it keeps nothing in memory that the boot record and
// its slots do not already hold.
func interrupt(p *os.Process) error { return errors.ErrUnsupported }

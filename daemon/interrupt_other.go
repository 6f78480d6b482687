//go:build !windows

package daemon

import "os"

// interrupt asks the process to stop (SIGINT).
func interrupt(p *os.Process) error { return p.Signal(os.Interrupt) }

//go:build !windows

package daemon

import (
	"os"
	"os/exec"
	"syscall"
)

// interrupt asks the process to stop (SIGINT).
func interrupt(p *os.Process) error { return p.Signal(os.Interrupt) }

// ownGroup starts the agent in its own process group: a Ctrl-C in the
// daemon's terminal reaches the daemon only, which then stops the agent
// itself, instead of both at once (which the daemon would take for a crash).
func ownGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

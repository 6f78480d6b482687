package main

import (
	"os"
	"os/exec"
	"syscall"
)

// ownGroup puts the child in its own process group, so a Ctrl-C at the
// terminal reaches the lab alone and the lab stops its children in order,
// and asks the kernel to send it SIGTERM if the lab dies without stopping
// it (killed, crashed): no child outlives the lab.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// interrupt asks the child to stop (ringfenced and ringfence-server stop
// cleanly on SIGINT: the daemon stops its agent first).
func interrupt(p *os.Process) error { return p.Signal(os.Interrupt) }

//go:build !linux

package main

import (
	"errors"
	"os"
	"os/exec"
)

// ownGroup leaves the child in the lab's process group: outside Linux there
// is no parent-death signal, and the lab stops its children itself.
func ownGroup(cmd *exec.Cmd) {}

// interrupt asks the child to stop; where a process cannot be sent SIGINT
// (Windows) it is killed.
func interrupt(p *os.Process) error {
	if err := p.Signal(os.Interrupt); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return err
		}
		return p.Kill()
	}
	return nil
}

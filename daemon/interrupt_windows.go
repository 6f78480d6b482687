package daemon

import (
	"errors"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/windows"
)

// interrupt: Windows has no signal a child without a console can catch, so
// the agent is killed; it keeps nothing in memory that the boot record and
// its slots do not already hold.
func interrupt(*os.Process) error { return errors.ErrUnsupported }

// ownGroup keeps a console Ctrl-C meant for the daemon away from the agent.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: windows.CREATE_NEW_PROCESS_GROUP}
}

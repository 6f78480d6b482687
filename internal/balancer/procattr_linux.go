package balancer

import (
	"os/exec"
	"syscall"
)

// procAttr puts haproxy in its own process group (a Ctrl-C at the terminal
// reaches the program that started it, which stops it in its turn) and
// has the kernel send it SIGTERM if that program dies without stopping it.
func procAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

//go:build unix

package failpoint

import "syscall"

func killSelf() {
	_ = syscall.Kill(syscall.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL cannot be caught; wait for it to land.
}

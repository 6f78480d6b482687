//go:build !linux

package balancer

import "os/exec"

// procAttr does nothing outside Linux: there is no parent-death signal,
// and whoever started haproxy stops it with Stop.
func procAttr(cmd *exec.Cmd) {}

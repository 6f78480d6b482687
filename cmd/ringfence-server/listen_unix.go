//go:build !windows

package main

import "syscall"

// defaultMaxConns derives --max-conns from RLIMIT_NOFILE. Go raises the soft
// limit to the hard one at start-up (Linux, macOS), so the soft limit read
// here is what the process may really open; an unreadable limit falls back
// to minConns.
func defaultMaxConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return minConns
	}
	return connsFor(uint64(rl.Cur))
}

package validator

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// limitMemory caps the child's data segment with RLIMIT_DATA. Unlike
// RLIMIT_AS it does not count address space that is only reserved, which Go
// and other runtimes reserve generously. The limit applies from the moment
// it is set, a few microseconds after the child starts; what the child
// allocates before then is the runtime's start-up, not the content.
//
// The returned function reports the child's peak resident memory once it
// has exited. A runtime that hits the limit does not always say so (Go 1.26
// can die of SIGSEGV inside the collector), so the peak is the evidence.
//
// The peak the kernel reports for a child starts at its parent's: Go starts
// children with vfork, and exec records the high-water mark of the memory
// it leaves, the parent's. So a peak at or below this process's own peak
// (taken after the start, when it is at least what it was at the exec)
// says nothing about the child, and is reported as 0 (unknown); a failing
// child is then judged by what it said and how it died.
func limitMemory(p *os.Process, n uint64) (func(*os.ProcessState) uint64, error) {
	lim := unix.Rlimit{Cur: n, Max: n}
	if err := unix.Prlimit(p.Pid, unix.RLIMIT_DATA, &lim, nil); err != nil {
		return nil, err
	}
	var self unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &self); err != nil {
		return nil, err
	}
	return func(ps *os.ProcessState) uint64 {
		ru, ok := ps.SysUsage().(*syscall.Rusage)
		if !ok || ru.Maxrss <= self.Maxrss {
			return 0
		}
		return uint64(ru.Maxrss) << 10 // kilobytes on Linux
	}, nil
}

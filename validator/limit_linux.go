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
func limitMemory(p *os.Process, n uint64) (func(*os.ProcessState) uint64, error) {
	lim := unix.Rlimit{Cur: n, Max: n}
	if err := unix.Prlimit(p.Pid, unix.RLIMIT_DATA, &lim, nil); err != nil {
		return nil, err
	}
	return func(ps *os.ProcessState) uint64 {
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > 0 {
			return uint64(ru.Maxrss) << 10 // kilobytes on Linux
		}
		return 0
	}, nil
}

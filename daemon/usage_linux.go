package daemon

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/boundedio"
)

// proc measures one process through /proc. Its pid could name another
// process once the first has been reaped; the start time, read when it is
// opened (before the daemon can reap it) and checked at every read, tells
// the two apart.
type proc struct {
	pid   int
	start string // field 22 of /proc/PID/stat
}

// maxProcFile bounds a read of a process's accounting (/proc/PID/stat is
// a few hundred bytes).
const maxProcFile = 4 << 10

// userHZ is the unit of /proc/PID/stat's CPU times: USER_HZ, which Linux
// fixes at 100 for user space on every architecture Go supports, whatever
// the kernel's own tick (sysconf(_SC_CLK_TCK) answers 100 from it; Go has
// no sysconf without cgo).
const userHZ = 100

// openProc opens the process pid for measuring. Call it before the
// process can be reaped (right after it starts).
func openProc(pid int) (*proc, error) {
	p := &proc{pid: pid}
	f, err := p.stat()
	if err != nil {
		return nil, err
	}
	p.start = f[19]
	return p, nil
}

// stat returns the fields of /proc/PID/stat after the command name (the
// first is the state, field 3), which may hold spaces and parentheses.
func (p *proc) stat() ([]string, error) {
	b, err := boundedio.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid), maxProcFile)
	if err != nil {
		return nil, err
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 20 {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields after the command; want at least 20", p.pid, len(f))
	}
	return f, nil
}

func (p *proc) read() (usage, error) {
	f, err := p.stat()
	if err != nil {
		return usage{}, err
	}
	if f[19] != p.start {
		return usage{}, fmt.Errorf("process %d: %w (its pid names another now)", p.pid, os.ErrProcessDone)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return usage{}, fmt.Errorf("/proc/%d/stat: %w", p.pid, err)
	}
	// statm: sizes in pages; the second is the resident set.
	b, err := boundedio.ReadFile(fmt.Sprintf("/proc/%d/statm", p.pid), maxProcFile)
	if err != nil {
		return usage{}, err
	}
	m := strings.Fields(string(b))
	if len(m) < 2 {
		return usage{}, fmt.Errorf("/proc/%d/statm: %d fields; want at least 2", p.pid, len(m))
	}
	pages, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		return usage{}, fmt.Errorf("/proc/%d/statm: %w", p.pid, err)
	}
	return usage{
		CPU: time.Duration(utime+stime) * (time.Second / userHZ),
		RSS: pages * uint64(os.Getpagesize()),
	}, nil
}

// close releases nothing: /proc needs no handle.
func (p *proc) close() {}

package daemon

import (
	"fmt"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// proc measures one process through a handle of its own, opened while the
// process is known to be the daemon's child (os.Process's handle keeps its
// id from being reused until then); close releases it.
type proc struct {
	mu sync.Mutex // reads (the loop, /metrics) against close
	h  windows.Handle
}

// openProc opens the process pid for measuring. Call it while the daemon
// still holds the process (right after it starts).
func openProc(pid int) (*proc, error) {
	// PROCESS_VM_READ too: GetProcessMemoryInfo wants it before Windows 8.1.
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION|windows.PROCESS_VM_READ, false, uint32(pid))
	if err != nil {
		return nil, fmt.Errorf("open process %d: %w", pid, err)
	}
	return &proc{h: h}, nil
}

// processMemoryCounters is PROCESS_MEMORY_COUNTERS (psapi.h), which
// golang.org/x/sys/windows does not define.
type processMemoryCounters struct {
	cb                         uint32
	PageFaultCount             uint32
	PeakWorkingSetSize         uintptr
	WorkingSetSize             uintptr
	QuotaPeakPagedPoolUsage    uintptr
	QuotaPagedPoolUsage        uintptr
	QuotaPeakNonPagedPoolUsage uintptr
	QuotaNonPagedPoolUsage     uintptr
	PagefileUsage              uintptr
	PeakPagefileUsage          uintptr
}

// getProcessMemoryInfo is K32GetProcessMemoryInfo, kernel32's own copy of
// psapi's GetProcessMemoryInfo (Windows 7 and later), which
// golang.org/x/sys/windows does not wrap.
var getProcessMemoryInfo = windows.NewLazySystemDLL("kernel32.dll").NewProc("K32GetProcessMemoryInfo")

func (p *proc) read() (usage, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.h == 0 {
		return usage{}, os.ErrProcessDone
	}
	var created, exited, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(p.h, &created, &exited, &kernel, &user); err != nil {
		return usage{}, fmt.Errorf("GetProcessTimes: %w", err)
	}
	var mem processMemoryCounters
	mem.cb = uint32(unsafe.Sizeof(mem))
	if ok, _, err := getProcessMemoryInfo.Call(uintptr(p.h), uintptr(unsafe.Pointer(&mem)), uintptr(mem.cb)); ok == 0 {
		return usage{}, fmt.Errorf("K32GetProcessMemoryInfo: %w", err)
	}
	// FILETIME durations count 100 ns intervals.
	ticks := func(f windows.Filetime) time.Duration {
		return time.Duration(uint64(f.HighDateTime)<<32|uint64(f.LowDateTime)) * 100
	}
	return usage{CPU: ticks(kernel) + ticks(user), RSS: uint64(mem.WorkingSetSize)}, nil
}

func (p *proc) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.h != 0 {
		_ = windows.CloseHandle(p.h)
		p.h = 0
	}
}

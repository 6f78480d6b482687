package bootguard_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/internal/testtmp"
)

// BenchmarkSelect measures Select on trial content, the path that writes
// the breadcrumb durably before the load (lock, read both copies, decide,
// write one copy in place, fsync), against a bare "write 512 bytes + fsync"
// to a file of the same size on the same file system, timed in the same
// iterations. It reports both and their ratio (x-bare).
func BenchmarkSelect(b *testing.B) {
	dir := testtmp.Dir(b)
	path := filepath.Join(dir, "bootrecord")
	bare := filepath.Join(dir, "bare")
	if err := os.WriteFile(bare, make([]byte, bootguard.FileSize), 0o600); err != nil {
		b.Fatal(err)
	}
	sector := make([]byte, bootguard.CopySize)
	var sel, min time.Duration
	left := 0
	for i := 0; b.Loop(); i++ {
		if left == 0 {
			b.StopTimer()
			trialRecord(b, path)
			left = 250 // a trial with 255 tries writes on each of them
			b.StartTimer()
		}
		left--
		t0 := time.Now()
		d, err := bootguard.Select(path)
		if err != nil || !d.Write {
			b.Fatal(err, d)
		}
		t1 := time.Now()
		f, err := os.OpenFile(bare, os.O_RDWR, 0)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.WriteAt(sector, int64(i%2)*bootguard.CopySize); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		f.Close()
		t2 := time.Now()
		sel += t1.Sub(t0)
		min += t2.Sub(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(sel.Microseconds())/n, "µs-select/op")
	b.ReportMetric(float64(min.Microseconds())/n, "µs-bare/op")
	b.ReportMetric(float64(sel)/float64(min), "x-bare")
}

// trialRecord writes a record whose active slot is a trial with 255 tries.
func trialRecord(tb testing.TB, path string) {
	tb.Helper()
	_ = os.Remove(path)
	if _, err := bootguard.Init(path); err != nil {
		tb.Fatal(err)
	}
	if _, err := bootguard.BeginStage(path, bootguard.SlotA); err != nil {
		tb.Fatal(err)
	}
	if _, err := bootguard.FinishStage(path, bootguard.SlotA, 291, 1001, [32]byte{1}); err != nil {
		tb.Fatal(err)
	}
	if _, err := bootguard.Activate(path, bootguard.SlotA, bootguard.Policy{Tries: 255, LoadTries: 255}); err != nil {
		tb.Fatal(err)
	}
}

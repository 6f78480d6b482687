package bootguard

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/failpoint"
)

// Failpoints of a record write, in order. FailpointTornWrite writes the first
// half of the copy, syncs it and dies: a torn sector.
const (
	FailpointBeforeWrite = "bootguard/before-write"
	FailpointTornWrite   = "bootguard/torn-write"
	FailpointAfterWrite  = "bootguard/after-write"
	FailpointAfterSync   = "bootguard/after-sync"
)

// SkipSync names the record write's sync for the power-cut tests, which
// show that it is needed by leaving it out (failpoint.EnvSkip).
const SkipSync = "bootguard/sync"

// LockTimeout is how long an update waits for another process that holds the
// record's lock file before it gives up.
const LockTimeout = 10 * time.Second

// lockSuffix names the lock file beside the record. The record itself is
// never locked, so a loader that takes no locks (a driver at boot) can always
// read it.
const lockSuffix = ".lock"

// readFile reads at most FileSize bytes of the record file.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bootguard: read boot record: %w", err)
	}
	defer f.Close()
	buf := make([]byte, FileSize)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("bootguard: read boot record %s: %w", path, err)
	}
	return buf[:n], nil
}

// writeCopy overwrites copy number target (0 or 1) in place and syncs.
func writeCopy(path string, target int, r *Record) error {
	b := r.Encode()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("bootguard: write boot record: %w", err)
	}
	defer f.Close()
	off := int64(target) * CopySize
	failpoint.Hit(FailpointBeforeWrite)
	if failpoint.Enabled(FailpointTornWrite) {
		// Crash tests: half the sector reaches the disk, then the process dies.
		if _, err := f.WriteAt(b[:CopySize/2], off); err == nil {
			_ = f.Sync()
		}
	}
	failpoint.Hit(FailpointTornWrite)
	if _, err := f.WriteAt(b[:], off); err != nil {
		return fmt.Errorf("bootguard: write boot record %s: %w", path, err)
	}
	failpoint.Hit(FailpointAfterWrite)
	if !failpoint.Skip(SkipSync) {
		if err := syncData(f); err != nil {
			return fmt.Errorf("bootguard: sync boot record %s: %w", path, err)
		}
	}
	failpoint.Hit(FailpointAfterSync)
	return f.Close()
}

// createFile writes a new record file holding r in both copies (copy 0 one
// sequence number ahead), through the durable-write helper.
func createFile(path string, r Record) error {
	r0, r1 := r, r
	r0.Seq = r.Seq + 1
	b0, b1 := r0.Encode(), r1.Encode()
	data := append(b0[:], b1[:]...)
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("bootguard: create boot record: %w", err)
	}
	return nil
}

// update runs fn on the current record under the lock file and writes the
// record it returns (if write) into the other copy, with the next sequence
// number (wrapping: see Newer). A record with no valid copy is ErrNoValidCopy.
func update(path string, fn func(r *Record) (write bool, err error)) (Record, error) {
	unlock, err := lockFile(path+lockSuffix, LockTimeout)
	if err != nil {
		return Record{}, err
	}
	defer unlock()
	data, err := readFile(path)
	if err != nil {
		return Record{}, err
	}
	cur, from, ok := Pick(data)
	if !ok {
		return Record{}, fmt.Errorf("%w (%s)", ErrNoValidCopy, path)
	}
	next := cur
	write, err := fn(&next)
	if err != nil || !write {
		return cur, err
	}
	next.Seq = cur.Seq + 1
	if err := writeCopy(path, 1-from, &next); err != nil {
		return cur, err
	}
	return next, nil
}

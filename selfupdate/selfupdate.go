// Package selfupdate replaces the running ringfenced binary with a new one
// that TUF verified, and brings the old one back if the new one fails its
// first start: the boot-loop guard, for the binary.
//
// Apply records a pending update durably (from, to, where the old binary is
// kept, attempts 0), then swaps the binary with github.com/minio/selfupdate
// ("minio" here), always passing the TUF-verified SHA-256 so that it checks
// the bytes it is about to put in place, keeping the old binary, and finally
// syncs the new file and its directory (minio's swap renames without
// syncing).
//
// Start runs first thing at every start. With no pending update it says
// Run. When the binary that starts is the pending version for the first
// time, it records attempts = 1 durably and says Trial: the caller runs and
// calls Confirm once it is healthy, which removes the record and the kept
// binary. When it starts again with attempts still 1 (the trial crashed,
// hung or was killed before Confirm), Start puts the kept binary back,
// records the version as failed (Failed lists it, and the daemon never
// applies it again), and says Restart: the caller exits non-zero and the
// service manager starts the old binary.
//
// minio/selfupdate is a small, maintained library that does the part that differs
// between platforms (on Windows a running .exe cannot be overwritten, only
// renamed, and a leftover is hidden rather than removed).
package selfupdate

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	minio "github.com/minio/selfupdate"

	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/internal/failpoint"
)

// DirName is the update state's directory under a host's root; the names
// below are files in it.
const DirName = "selfupdate"

// File names in the state directory.
const (
	PendingName = "pending.json"
	FailedName  = "failed.json"
	OldName     = "ringfenced.old"
	maxState    = 64 << 10
	maxFailed   = 100
)

// Failpoints between the durable steps of Apply and Start.
const (
	FailpointPendingWritten = "selfupdate/apply/pending-written"
	FailpointSwapped        = "selfupdate/apply/swapped"
	FailpointTrialRecorded  = "selfupdate/start/trial-recorded"
	FailpointRestored       = "selfupdate/start/restored"
)

// Decision is what Start tells the caller to do.
type Decision int

const (
	// Run normally: no update is pending.
	Run Decision = iota
	// Trial: this is the first start of a new binary; call Confirm once
	// healthy.
	Trial
	// Restart: the new binary failed its first start and the old one is
	// back in place; exit non-zero so the service manager starts it.
	Restart
)

func (d Decision) String() string {
	return [...]string{"run", "trial", "restart"}[d]
}

// pending is the record of an applied update not yet confirmed.
type pending struct {
	From      string    `json:"from"`
	To        string    `json:"to"`
	Exe       string    `json:"exe"`
	OldPath   string    `json:"old_path"`
	OldSHA256 string    `json:"old_sha256"`
	Attempts  int       `json:"attempts"`
	AppliedAt time.Time `json:"applied_at"`
}

// Apply replaces exe with the file newBinary, whose SHA-256 TUF verified as
// sum, as version to (the running one is from). stateDir keeps the record
// and the old binary. On error, exe is unchanged (or restored: selfupdate's
// RollbackError is reported if even that failed).
func Apply(exe, newBinary string, sum [32]byte, from, to, stateDir string) error {
	if slices.Contains(mustFailed(stateDir), to) {
		return fmt.Errorf("selfupdate: version %s failed its first start here before; not applying it again", to)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("selfupdate: %w", err)
	}
	old := filepath.Join(stateDir, OldName)
	oldSum, err := fileSHA256(exe)
	if err != nil {
		return fmt.Errorf("selfupdate: read the running binary: %w", err)
	}
	p := pending{From: from, To: to, Exe: exe, OldPath: old, OldSHA256: fmt.Sprintf("%x", oldSum), AppliedAt: time.Now().UTC()}
	if err := writeJSON(filepath.Join(stateDir, PendingName), p); err != nil {
		return err
	}
	failpoint.Hit(FailpointPendingWritten)
	f, err := os.Open(newBinary)
	if err != nil {
		_ = os.Remove(filepath.Join(stateDir, PendingName))
		return fmt.Errorf("selfupdate: %w", err)
	}
	defer f.Close()
	if err := swap(exe, f, sum, old); err != nil {
		_ = os.Remove(filepath.Join(stateDir, PendingName))
		return err
	}
	failpoint.Hit(FailpointSwapped)
	return nil
}

// swap puts the bytes of r in place of exe through selfupdate, keeping the
// current exe at keep ("" to let selfupdate drop it), then syncs.
func swap(exe string, r io.Reader, sum [32]byte, keep string) error {
	err := minio.Apply(r, minio.Options{TargetPath: exe, Checksum: sum[:], Hash: crypto.SHA256, OldSavePath: keep})
	if err != nil {
		if rerr := minio.RollbackError(err); rerr != nil {
			return fmt.Errorf("selfupdate: the swap failed (%v) and so did putting the old binary back (%v): restore %s by hand", err, rerr, exe)
		}
		return fmt.Errorf("selfupdate: %w", err)
	}
	return syncFile(exe)
}

// Start decides what this start of the binary at exe, version version, is.
func Start(exe, stateDir, version string) (Decision, error) {
	path := filepath.Join(stateDir, PendingName)
	var p pending
	ok, err := readJSON(path, &p)
	if err != nil || !ok {
		return Run, err
	}
	if p.To != version {
		// The old binary runs: the swap never happened, or was undone.
		return Run, removeDurably(path)
	}
	if p.Attempts == 0 {
		p.Attempts = 1
		if err := writeJSON(path, p); err != nil {
			return Run, err
		}
		failpoint.Hit(FailpointTrialRecorded)
		return Trial, nil
	}
	// The trial start never confirmed: bring the old binary back.
	if err := restore(p); err != nil {
		return Run, err
	}
	failpoint.Hit(FailpointRestored)
	failed := mustFailed(stateDir)
	if !slices.Contains(failed, p.To) {
		failed = append(failed, p.To)
		if len(failed) > maxFailed {
			failed = failed[len(failed)-maxFailed:]
		}
		if err := writeJSON(filepath.Join(stateDir, FailedName), failed); err != nil {
			return Restart, err
		}
	}
	return Restart, removeDurably(path)
}

func restore(p pending) error {
	var want [32]byte
	if b, err := hex.DecodeString(p.OldSHA256); err != nil || len(b) != len(want) {
		return fmt.Errorf("selfupdate: the pending record has no checksum of the old binary; reinstall ringfenced %s", p.From)
	} else {
		copy(want[:], b)
	}
	f, err := os.Open(p.OldPath)
	if err != nil {
		return fmt.Errorf("selfupdate: the kept binary is gone (%w); reinstall ringfenced %s", err, p.From)
	}
	defer f.Close()
	return swap(p.Exe, f, want, "")
}

// Confirm ends a trial start: the new binary is healthy.
func Confirm(stateDir string) error {
	var p pending
	ok, err := readJSON(filepath.Join(stateDir, PendingName), &p)
	if err != nil || !ok {
		return err
	}
	if err := removeDurably(filepath.Join(stateDir, PendingName)); err != nil {
		return err
	}
	_ = os.Remove(p.OldPath)
	return nil
}

// Failed lists the versions that failed their first start here.
func Failed(stateDir string) ([]string, error) {
	var out []string
	_, err := readJSON(filepath.Join(stateDir, FailedName), &out)
	return out, err
}

func mustFailed(stateDir string) []string {
	f, _ := Failed(stateDir)
	return f
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("selfupdate: %w", err)
	}
	return nil
}

func readJSON(path string, v any) (bool, error) {
	b, err := boundedio.ReadFile(path, maxState)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("selfupdate: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return false, fmt.Errorf("selfupdate: %s: %w (remove it to drop the pending update)", path, err)
	}
	return true, nil
}

func removeDurably(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("selfupdate: %w", err)
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		f, err = os.Open(path)
		if err != nil {
			return fmt.Errorf("selfupdate: %w", err)
		}
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("selfupdate: sync %s: %w", path, err)
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}

func fileSHA256(path string) ([32]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [32]byte{}, err
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s, nil
}

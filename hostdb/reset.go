package hostdb

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/clock"
)

// MaxCorruptKept is how many moved-aside corrupt databases OpenOrReset keeps
// next to state.db for diagnosis; it removes older ones.
const MaxCorruptKept = 3

// corruptInfix separates the database's name from the Unix time in the name
// of a moved-aside file: state.db.corrupt-1721347200.
const corruptInfix = ".corrupt-"

// OpenOrReset opens the database at path like Open. If the file is corrupt,
// it moves it aside to <path>.corrupt-<unix time> (the time from
// opts.Clock), creates a fresh database, and reports reset as true; it then
// keeps only the newest MaxCorruptKept moved-aside files. The caller should
// log the reset: the history, quarantine list and pins are gone, and the
// boot record alone decides what loads.
//
// OpenOrReset resets only on ErrCorrupt: ErrLocked, ErrSchema and errors of
// the operating system are returned as they are, with the file untouched.
// With opts.ReadOnly it never resets and behaves like Open.
func OpenOrReset(path string, opts Options) (db *DB, reset bool, err error) {
	db, err = Open(path, opts)
	if err == nil || opts.ReadOnly || !errors.Is(err, ErrCorrupt) {
		return db, false, err
	}
	openErr := err
	clk := opts.Clock
	if clk == nil {
		clk = clock.System{}
	}
	aside := path + corruptInfix + strconv.FormatInt(clk.Now().Unix(), 10)
	// The corrupt file is complete as it is (bbolt syncs its writes); the
	// rename only has to be durable, which atomicfile.Rename makes it.
	if err := atomicfile.Rename(path, aside); err != nil {
		return nil, false, fmt.Errorf("hostdb: reset after %v: move the corrupt database aside: %w", openErr, err)
	}
	db, err = Open(path, opts)
	if err != nil {
		return nil, false, fmt.Errorf("hostdb: reset after %v: %w", openErr, err)
	}
	// Losing old diagnostics is no reason to fail; the fresh database works.
	_ = pruneCorrupt(path)
	return db, true, nil
}

// pruneCorrupt removes all but the newest MaxCorruptKept moved-aside files of
// the database at path.
func pruneCorrupt(path string) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	type aside struct {
		name string
		unix int64
	}
	var found []aside
	prefix := base + corruptInfix
	for _, e := range entries {
		suffix, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		unix, err := strconv.ParseInt(suffix, 10, 64)
		if err != nil {
			continue // not ours
		}
		found = append(found, aside{e.Name(), unix})
	}
	if len(found) <= MaxCorruptKept {
		return nil
	}
	slices.SortFunc(found, func(a, b aside) int { return cmp.Compare(b.unix, a.unix) }) // newest first
	var errs []error
	for _, a := range found[MaxCorruptKept:] {
		if err := os.Remove(filepath.Join(dir, a.name)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

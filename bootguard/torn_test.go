package bootguard_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/bootguard"
)

// TestTornWriteEveryLength tears the writer's update at every byte length,
// over either copy: a partial write of the new record over the copy that
// does not hold the current one. The reader must find the old record or, at
// the full 512 bytes only, the new one: a torn write loses at most the write
// in flight.
func TestTornWriteEveryLength(t *testing.T) {
	old := bootguard.Record{Seq: 41, Active: bootguard.SlotB, Fallback: bootguard.SlotA, Slots: [2]bootguard.Entry{goodA, trialB}}
	older := old
	older.Seq = 40
	older.Active, older.Fallback = bootguard.SlotA, bootguard.SlotNone
	d := bootguard.Decide(old, true) // the update a boot writes: breadcrumb LOADING
	require.True(t, d.Write)
	newCopy := d.Next.Encode()

	for current := range 2 {
		// The current record in copy `current`, an older one in the other;
		// the writer targets the other.
		target := 1 - current
		base := make([]byte, bootguard.FileSize)
		oc, oo := old.Encode(), older.Encode()
		copy(base[current*bootguard.CopySize:], oc[:])
		copy(base[target*bootguard.CopySize:], oo[:])
		for n := 0; n <= bootguard.CopySize; n++ {
			f := append([]byte(nil), base...)
			copy(f[target*bootguard.CopySize:], newCopy[:n])
			got, _, ok := bootguard.Pick(f)
			require.True(t, ok, "current in copy %d, torn at %d bytes: no valid copy", current, n)
			if n == bootguard.CopySize {
				require.Equal(t, d.Next, got, "complete write over copy %d", target)
				continue
			}
			require.Equal(t, old, got, "current in copy %d, torn at %d bytes", current, n)
		}
	}
}

// TestTornWriteThroughFile tears a real update of a record file written by
// the package's own functions, at every length, and runs the loader on the
// result: it always decides from the old record or the new one.
func TestTornWriteThroughFile(t *testing.T) {
	path := newRecord(t)
	dir := filepath.Dir(path)
	good(t, path, bootguard.SlotA, 1001)
	stage(t, path, bootguard.SlotB, 1002)
	_, err := bootguard.Activate(path, bootguard.SlotB, bootguard.DefaultPolicy())
	require.NoError(t, err)
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	cur, from, ok := bootguard.Pick(before)
	require.True(t, ok)
	d := bootguard.Decide(cur, true)
	require.True(t, d.Write)
	next := d.Next.Encode()
	oldDecision := d.String()

	// The complete write, through Select, lands where Pick predicts.
	dSel, err := bootguard.Select(path)
	require.NoError(t, err)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, next[:], after[(1-from)*bootguard.CopySize:(2-from)*bootguard.CopySize])
	require.Equal(t, oldDecision, dSel.String())

	torn := filepath.Join(dir, "torn")
	for n := 0; n < bootguard.CopySize; n++ {
		f := append([]byte(nil), before...)
		copy(f[(1-from)*bootguard.CopySize:], next[:n])
		require.NoError(t, os.WriteFile(torn, f, 0o600))
		d, err := bootguard.Select(torn)
		require.NoError(t, err)
		// The torn write was lost: the boot decides from the old record
		// again, exactly as the first time.
		require.Equal(t, oldDecision, d.String(), "torn at %d bytes", n)
	}
}

package bootguard_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ringfence/ringfence/bootguard"
)

// FuzzPickDecide: any bytes as a record file never panic the reader or the
// loader contract; a valid copy re-encodes to itself (reserved bytes aside);
// a decision that writes always writes a valid copy one sequence ahead that
// loads what the decision said.
func FuzzPickDecide(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("..", "testdata", "bootrecord", "*.bin"))
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, _, ok := bootguard.Pick(data)
		if ok {
			b := rec.Encode()
			again, ok2 := bootguard.DecodeCopy(b[:])
			if !ok2 || again != rec {
				t.Fatalf("re-encoded copy does not decode to itself: %+v", rec)
			}
		}
		d := bootguard.Decide(rec, ok)
		if !d.Write {
			return
		}
		if d.Next.Seq != rec.Seq+1 {
			t.Fatalf("next seq %d after %d", d.Next.Seq, rec.Seq)
		}
		b := d.Next.Encode()
		next, ok := bootguard.DecodeCopy(b[:])
		if !ok && d.Next.Seq <= bootguard.MaxSeq {
			t.Fatalf("decision writes an invalid copy: %+v", d.Next)
		}
		if ok && d.Action == bootguard.ActionLoad && next.Active != d.Slot {
			t.Fatalf("decision loads slot %v but writes active %v", d.Slot, next.Active)
		}
	})
}

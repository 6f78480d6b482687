package bootguard_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ringfence/ringfence/bootguard"
)

// FuzzPickDecide: any bytes as a record file never panic the reader or the
// loader contract; a valid copy re-encodes to itself (reserved bytes aside);
// a decision that writes always writes a copy one sequence ahead that loads
// what the decision said, and that copy, placed where the writer puts it,
// decodes and is the one the next read picks. A trial always loads with the
// breadcrumb LOADING on disk, and after a clean stop (STOPPED) without
// spending a try. (bootguard/c/fuzz_select.c holds the C loader to the same
// properties.)
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
		rec, from, ok := bootguard.Pick(data)
		if ok {
			b := rec.Encode()
			again, ok2 := bootguard.DecodeCopy(b[:])
			if !ok2 || again != rec {
				t.Fatalf("re-encoded copy does not decode to itself: %+v", rec)
			}
		}
		d := bootguard.Decide(rec, ok)
		if d.Why == bootguard.WhyTrial && (!d.Write || d.Next.Entry(d.Slot).Crumb != bootguard.CrumbLoading) {
			t.Fatalf("a trial loads without the breadcrumb LOADING on disk: %v", d)
		}
		if a := rec.Active; ok && a != bootguard.SlotNone {
			if e := rec.Entry(a); e.State == bootguard.StateTrial && e.Crumb == bootguard.CrumbStopped &&
				(d.Why != bootguard.WhyTrial || d.Next.Entry(a).Tries != e.Tries) {
				t.Fatalf("after a clean stop: %v, tries %d -> %d; want the trial loaded, no try spent", d, e.Tries, d.Next.Entry(a).Tries)
			}
		}
		if !d.Write {
			return
		}
		if d.Next.Seq != rec.Seq+1 {
			t.Fatalf("next seq %d after %d", d.Next.Seq, rec.Seq)
		}
		if d.Action == bootguard.ActionLoad && d.Next.Active != d.Slot {
			t.Fatalf("decision loads slot %v but writes active %v", d.Slot, d.Next.Active)
		}
		// The write lands: the file as the loader reads it (its first
		// FileSize bytes, padded), with the new copy over the one the
		// record was not read from, reads back as exactly the decided
		// record, from that copy.
		file := make([]byte, bootguard.FileSize)
		copy(file, data)
		b := d.Next.Encode()
		copy(file[(1-from)*bootguard.CopySize:], b[:])
		got, gotFrom, ok := bootguard.Pick(file)
		switch {
		case !ok:
			t.Fatalf("the written copy (seq %d) does not decode", d.Next.Seq)
		case gotFrom != 1-from:
			t.Fatalf("the written copy %d (seq %d) is not picked next: copy %d (seq %d) is", 1-from, d.Next.Seq, gotFrom, got.Seq)
		case got != d.Next:
			t.Fatalf("the copy picked next is %+v, not the decided %+v", got, d.Next)
		}
	})
}

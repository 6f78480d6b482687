package controller

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestHostIndex: the index agrees with a map through random adds, drops
// (the last record moving into the hole) and growth, with a small table
// so that runs wrap around its end.
func TestHostIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := &Controller{index: newHostIndex(0)}
	want := map[string]bool{}
	for step := range 20_000 {
		id := fmt.Sprintf("h-%d", rng.IntN(3000))
		switch {
		case rng.IntN(3) == 0:
			c.drop(id)
			delete(want, id)
		case c.rec(id) == nil:
			c.add(hostRec{id: id})
			want[id] = true
		}
		if step%500 == 0 || step > 19_900 {
			if len(c.recs) != len(want) || c.index.n != len(want) {
				t.Fatalf("step %d: %d records, %d indexed, want %d", step, len(c.recs), c.index.n, len(want))
			}
			for i := range 3000 {
				id := fmt.Sprintf("h-%d", i)
				h := c.rec(id)
				if (h != nil) != want[id] || h != nil && h.id != id {
					t.Fatalf("step %d: %s: found %v, want %v", step, id, h != nil, want[id])
				}
			}
		}
	}
}

package rollout_test

import (
	"encoding/json"
	"testing"

	"github.com/ringfence/ringfence/rollout"
)

// FuzzParse: no input panics the plan parser, and an accepted plan has
// what hosts rely on (a list of stages, each with a version and a
// percentage in range; an empty list gives no host content) and survives
// a JSON round trip.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"format":"ringfence-rollout/v1","channel":291,"stages":[{"name":"canary","percent":0,"hosts":["h1"],"version":1002},{"name":"all","percent":100,"version":1002}],"deny":[1003]}`))
	f.Add([]byte(`{"format":"ringfence-rollout/v1","channel":1,"stages":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := rollout.Parse(data)
		if err != nil {
			return
		}
		if p.Stages == nil || p.Format != rollout.Format || p.NoContent() != (len(p.Stages) == 0) {
			t.Fatalf("accepted %+v", p)
		}
		for _, s := range p.Stages {
			if s.Version == 0 || s.Percent < 0 || s.Percent > 100 {
				t.Fatalf("accepted stage %+v", s)
			}
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rollout.Parse(b); err != nil {
			t.Fatalf("re-encoded plan rejected: %v", err)
		}
	})
}

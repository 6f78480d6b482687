package sensor

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/ringfence/ringfence/validator"
)

// decodeEvents turns fuzz bytes into events: per event a template-type
// byte and a field count, then per field a length byte, that many string
// bytes and a uint64.
func decodeEvents(b []byte) []Event {
	var out []Event
	for len(b) >= 2 && len(out) < 64 {
		ev := Event{TemplateType: uint16(b[0] % 9), Fields: make([]Value, int(b[1]%72))}
		b = b[2:]
		for i := range ev.Fields {
			if len(b) == 0 {
				break
			}
			n := min(int(b[0]), len(b)-1)
			ev.Fields[i].Str = string(b[1 : 1+n])
			b = b[1+n:]
			if len(b) >= 8 {
				ev.Fields[i].Num = binary.LittleEndian.Uint64(b)
				b = b[8:]
			}
		}
		out = append(out, ev)
	}
	return out
}

// FuzzInterpreter is the differential property that matters most: any file
// Validate accepts never panics the interpreter, on any event. The fuzzer
// mutates both the file and the events; accepted files are also driven
// with their synthesized events, which reach every referenced field.
func FuzzInterpreter(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("..", "testdata", "channels", "*.rfch"))
	if len(paths) == 0 {
		f.Fatal("no seed files")
	}
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, []byte{7, 21, 3, 'a', 'b', 'c', 1, 2, 3, 4, 5, 6, 7, 8}, i%2 == 0)
	}
	var caps [2]*validator.Capabilities
	for i, v := range []string{"7.11", "7.12"} {
		c, err := validator.LoadCapabilities(filepath.Join("..", "testdata", "capabilities", "sensor-"+v+".json"))
		if err != nil {
			f.Fatal(err)
		}
		caps[i] = c
	}
	f.Fuzz(func(t *testing.T, file, events []byte, newer bool) {
		c := caps[0]
		if newer {
			c = caps[1]
		}
		cf, ps := validator.Validate(file, c, validator.Options{})
		if ps.HasErrors() {
			return
		}
		p, err := New(c).Prepare(cf)
		if err != nil {
			t.Fatalf("the interpreter refused a file Validate accepted: %v", err)
		}
		for _, ev := range append(decodeEvents(events), Synthesize(cf)...) {
			p.Eval(ev) // a panic here fails the fuzz run
		}
	})
}

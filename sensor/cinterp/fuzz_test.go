//go:build cgo

package cinterp

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/validator"
	"github.com/stretchr/testify/require"
)

// withTrailer returns data with its header's body length set to what the
// file holds and its SHA-256 trailer recomputed, so that mutations of the
// body reach the body's checks instead of stopping at CHECKSUM. Data too
// short (or too large) to have a header and a trailer is returned as is.
func withTrailer(data []byte) []byte {
	n := len(data)
	if n < validator.HeaderSize+validator.TrailerSize || n > validator.MaxFileSize {
		return data
	}
	b := append([]byte(nil), data...)
	end := n - validator.TrailerSize
	binary.LittleEndian.PutUint32(b[28:], uint32(end-validator.HeaderSize))
	sum := sha256.Sum256(b[:end])
	copy(b[end:], sum[:])
	return b
}

// fuzzEvents turns fuzz bytes into events: per event a selector byte (the
// file's template type unless it is 0 mod 8, then that byte) and a field
// count byte, then per field a length byte, that many string bytes and a
// uint64. Strings chosen by the fuzzer meet the file's patterns and
// operands, where random events rarely would.
func fuzzEvents(b []byte, tt uint16) []sensor.Event {
	var out []sensor.Event
	for len(b) >= 2 && len(out) < 16 {
		ev := sensor.Event{TemplateType: tt, Fields: make([]sensor.Value, int(b[1]%72))}
		if b[0]%8 == 0 {
			ev.TemplateType = uint16(b[0])
		}
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

// Bounds that keep one iteration fast whatever the file: synthesized
// events for at most synthInstances instances, and fewer random events for
// files with many matchers (every event evaluates every instance).
const (
	synthInstances = 32
	randomEvents   = 50
	cRandomEvents  = 10
	bigFile        = 4096 // matchers
)

// FuzzCInterpreterMatchesGo is the differential target of the C port: for
// any bytes, rfi_check_header + the trailer + rfi_parse_count/rfi_parse
// give the code validator.Parse gives; for a file that parses, the same
// file, the same synthesized events, and on every event (synthesized,
// sensor.RandomEvents from seed, rfi_rand_event's, and events decoded from
// the fuzzer's bytes) the same verdict, or a fault in both at the same
// instance (Go's index-out-of-range panic, C's RFI_E_FIELD), for a sensor
// of 1 to 64 inputs.
//
// With keepTrailer false the file's body length and SHA-256 trailer are
// made to fit first, so that mutations reach the body; with it true the
// bytes are parsed as they are, which compares the header and checksum
// checks.
func FuzzCInterpreterMatchesGo(f *testing.F) {
	for i, data := range channelFilesSorted(f) {
		f.Add(data, []byte{7, 21, 3, 'a', 'b', 'c', 1, 2, 3, 4, 5, 6, 7, 8}, uint8(19+i%3), uint64(i), i%4 == 0)
	}
	f.Fuzz(func(t *testing.T, data, events []byte, ninputs uint8, seed uint64, keepTrailer bool) {
		n := 1 + int(ninputs)%64
		if !keepTrailer {
			data = withTrailer(data)
		}
		cf, want := goParse(t, data)
		file, got := Parse(data)
		if got != want {
			t.Fatalf("C parse code %v, Go %v", got, want)
		}
		if got != OK {
			return
		}
		defer file.Close()
		requireSameFile(t, cf, file.ChannelFile())

		head := *cf
		head.Instances = cf.Instances[:min(len(cf.Instances), synthInstances)]
		synth := sensor.Synthesize(&head)
		require.Equal(t, synth, file.Synthesize(len(head.Instances)), "synthesized events")

		random, cRandom := randomEvents, cRandomEvents
		if matchers(cf) > bigFile {
			random, cRandom = 4, 2
		}
		evs := append(synth, fuzzEvents(events, cf.TemplateType)...)
		next := sensor.RandomEvents(cf, seed)
		for range random {
			evs = append(evs, next())
		}
		evs = append(evs, file.RandomEvents(seed, cRandom)...)
		compareRun(t, file, cf, n, evs, fuzzBudget)
	})
}

func matchers(cf *validator.ChannelFile) int {
	n := 0
	for i := range cf.Instances {
		n += len(cf.Instances[i].Matchers)
	}
	return n
}

package validator

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/channels/*.rfch from their JSON sources")

const channelDir = "../testdata/channels"

// mutations turn a good file into a malformed one that no JSON description
// can express. Each is applied to the encoding of its source and the
// checksum is recomputed where the point is to reach a later check.
var mutations = map[string]struct {
	from   string
	mutate func([]byte) []byte
}{
	"bad-truncated": {"good-ipc-1001", func(b []byte) []byte { return b[:len(b)-40] }},
	"bad-checksum":  {"good-ipc-1001", func(b []byte) []byte { b[HeaderSize+30] ^= 0x20; return b }},
	"bad-magic":     {"good-ipc-1001", func(b []byte) []byte { b[3] = 'X'; return b }},
	"bad-count-limit": {"good-ipc-1001", func(b []byte) []byte {
		binary.LittleEndian.PutUint32(b[24:], MaxInstances+1)
		return fixChecksum(b)
	}},
	"bad-string-length": {"good-ipc-1001", func(b []byte) []byte {
		// Instance 1, field 1 (a prefix): kind byte at body offset
		// 20 fields + 4 id + 1 action, its length right after.
		binary.LittleEndian.PutUint16(b[HeaderSize+26:], MaxStringLen+1)
		return fixChecksum(b)
	}},
	"bad-matcher-kind": {"good-ipc-1001", func(b []byte) []byte { b[HeaderSize+25] = 9; return fixChecksum(b) }},
	"bad-trailing-data": {"good-ipc-1001", func(b []byte) []byte {
		end := len(b) - TrailerSize
		b = append(b[:end:end], 0, 0, 0, 0)
		binary.LittleEndian.PutUint32(b[28:], binary.LittleEndian.Uint32(b[28:])+4)
		return fixChecksum(append(b, make([]byte, TrailerSize)...))
	}},
}

func fixChecksum(b []byte) []byte {
	end := len(b) - TrailerSize
	sum := sha256.Sum256(b[:end])
	copy(b[end:], sum[:])
	return b
}

func encodeSourceFile(t testing.TB, name string) []byte {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(channelDir, "src", name+".json"))
	require.NoError(t, err)
	f, err := DecodeSource(src)
	require.NoError(t, err, name)
	b, err := Encode(f)
	require.NoError(t, err, name)
	return b
}

// TestChannelTestdata checks that every .rfch in testdata is exactly what
// its JSON source (plus, for bad-* files, its mutation) encodes to, so the
// reviewable sources are the truth. Run with -update to rewrite them.
func TestChannelTestdata(t *testing.T) {
	srcs, err := filepath.Glob(filepath.Join(channelDir, "src", "*.json"))
	require.NoError(t, err)
	want := map[string][]byte{}
	for _, s := range srcs {
		name := filepath.Base(s[:len(s)-len(".json")])
		want[name] = encodeSourceFile(t, name)
	}
	for name, m := range mutations {
		want[name] = m.mutate(bytes.Clone(encodeSourceFile(t, m.from)))
	}
	have, err := filepath.Glob(filepath.Join(channelDir, "*.rfch"))
	require.NoError(t, err)
	for _, h := range have {
		name := filepath.Base(h[:len(h)-len(".rfch")])
		if _, ok := want[name]; !ok {
			t.Errorf("%s has no source in testdata/channels/src and no mutation", h)
		}
	}
	for name, b := range want {
		path := filepath.Join(channelDir, name+".rfch")
		if *update {
			require.NoError(t, os.WriteFile(path, b, 0o644))
			continue
		}
		got, err := os.ReadFile(path)
		require.NoError(t, err, "run: go test ./validator -run TestChannelTestdata -update")
		require.Equal(t, b, got, "%s is stale; run: go test ./validator -run TestChannelTestdata -update", path)
	}
}

func loadCaps(t testing.TB, version string) *Capabilities {
	t.Helper()
	c, err := LoadCapabilities(filepath.Join("../testdata/capabilities", "sensor-"+version+".json"))
	require.NoError(t, err)
	return c
}

// TestChannelVerdicts pins what Validate says about every testdata file,
// against the sensor that supplies 20 IPC inputs and the one that supplies 21.
func TestChannelVerdicts(t *testing.T) {
	type verdict struct {
		errors   []Code // distinct error codes, sorted
		warnings []Code
	}
	tests := []struct {
		file  string
		on711 verdict
		on712 verdict
	}{
		{"good-ipc-1001", verdict{}, verdict{}},
		{"good-ipc-1002", verdict{}, verdict{}},
		{"good-ipc-1003", verdict{}, verdict{}},
		{"cf291-shape", verdict{errors: []Code{CodeFieldNotSupplied}, warnings: []Code{CodeFieldCountMismatch}}, verdict{}},
		{"cf291-wildcard", verdict{warnings: []Code{CodeFieldCountMismatch}}, verdict{}},
		{"costly-glob", verdict{}, verdict{}},
		{"bad-truncated", verdict{errors: []Code{CodeTruncated}}, verdict{errors: []Code{CodeTruncated}}},
		{"bad-checksum", verdict{errors: []Code{CodeChecksum}}, verdict{errors: []Code{CodeChecksum}}},
		{"bad-magic", verdict{errors: []Code{CodeBadMagic}}, verdict{errors: []Code{CodeBadMagic}}},
		{"bad-count-limit", verdict{errors: []Code{CodeCountLimit}}, verdict{errors: []Code{CodeCountLimit}}},
		{"bad-string-length", verdict{errors: []Code{CodeLengthLimit}}, verdict{errors: []Code{CodeLengthLimit}}},
		{"bad-matcher-kind", verdict{errors: []Code{CodeBadMatcher}}, verdict{errors: []Code{CodeBadMatcher}}},
		{"bad-trailing-data", verdict{errors: []Code{CodeTrailingData}}, verdict{errors: []Code{CodeTrailingData}}},
		{"bad-pattern-bomb", verdict{errors: []Code{CodePatternTooComplex}}, verdict{errors: []Code{CodePatternTooComplex}}},
		{"bad-matcher-type", verdict{errors: []Code{CodeMatcherType}}, verdict{errors: []Code{CodeMatcherType}}},
		{"bad-empty-range", verdict{errors: []Code{CodeBadRange}}, verdict{errors: []Code{CodeBadRange}}},
		{"bad-contradictory", verdict{errors: []Code{CodeContradictory}}, verdict{errors: []Code{CodeContradictory}}},
		{"bad-duplicate-id", verdict{errors: []Code{CodeDuplicateID}}, verdict{errors: []Code{CodeDuplicateID}}},
	}
	caps := map[string]*Capabilities{"7.11": loadCaps(t, "7.11"), "7.12": loadCaps(t, "7.12")}
	seen := map[Code]string{}
	for _, tt := range tests {
		data, err := ReadFile(filepath.Join(channelDir, tt.file+".rfch"))
		require.NoError(t, err)
		for ver, want := range map[string]verdict{"7.11": tt.on711, "7.12": tt.on712} {
			t.Run(tt.file+"/sensor-"+ver, func(t *testing.T) {
				_, ps := Validate(data, caps[ver], Options{})
				var got verdict
				for _, p := range ps {
					if p.Severity == SeverityError {
						got.errors = appendUnique(got.errors, p.Code)
					} else {
						got.warnings = appendUnique(got.warnings, p.Code)
					}
				}
				require.Equal(t, want, got, "problems: %v", ps)
				require.Equal(t, len(want.errors) > 0, ps.HasErrors())
			})
		}
		// Every bad-* file is rejected with a code of its own.
		if len(tt.on711.errors) == 1 && tt.file[:4] == "bad-" {
			c := tt.on711.errors[0]
			require.Empty(t, seen[c], "%s and %s share code %s", seen[c], tt.file, c)
			seen[c] = tt.file
		}
	}
}

func appendUnique(cs []Code, c Code) []Code {
	if slices.Contains(cs, c) {
		return cs
	}
	cs = append(cs, c)
	slices.Sort(cs)
	return cs
}

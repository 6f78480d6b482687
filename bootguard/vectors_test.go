package bootguard_test

import (
	"encoding/hex"
	"flag"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/internal/testtmp"
)

var updateVectors = flag.Bool("update", false, "rewrite testdata/bootrecord from the Go implementation")

var vectorDir = filepath.Join("..", "testdata", "bootrecord")

// Entries used by the vectors.
var (
	goodA  = bootguard.Entry{Channel: 291, Version: 1001, Digest: digest(1), State: bootguard.StateGood}
	trialB = bootguard.Entry{Channel: 291, Version: 1002, Digest: digest(2), State: bootguard.StateTrial, Tries: 2, LoadTries: 1}
)

func digest(b byte) [32]byte {
	var d [32]byte
	for i := range d {
		d[i] = b + byte(i)
	}
	return d
}

func with(e bootguard.Entry, f func(*bootguard.Entry)) bootguard.Entry {
	f(&e)
	return e
}

func enc(r bootguard.Record) []byte {
	b := r.Encode()
	return b[:]
}

// file is a record file of two copies.
func file(c0, c1 []byte) []byte { return append(slices.Clone(c0), c1...) }

// both writes r as copy 0 and an older version of it as copy 1.
func both(r bootguard.Record) []byte {
	old := r
	old.Seq--
	return file(enc(r), enc(old))
}

// patch returns b with b[off] = v, CRC not fixed.
func patch(b []byte, off int, v byte) []byte {
	b = slices.Clone(b)
	b[off] = v
	return b
}

// patchCRC returns b with b[off] = v in copy 0 and the CRC recomputed, so
// only the field's range check can reject it.
func patchCRC(r bootguard.Record, off int, v byte) []byte {
	c := enc(r)
	c[off] = v
	return file(fixCRC(c), make([]byte, bootguard.CopySize))
}

func fixCRC(c []byte) []byte {
	// CRC32C over bytes 0..508, little-endian at 508.
	sum := crc32c(c[:bootguard.CopySize-4])
	c[508], c[509], c[510], c[511] = byte(sum), byte(sum>>8), byte(sum>>16), byte(sum>>24)
	return c
}

// vectors are the named record files the Go and C implementations must
// agree on.
func vectors() map[string][]byte {
	rec := func(seq uint64, active, fallback bootguard.Slot, a, b bootguard.Entry) bootguard.Record {
		return bootguard.Record{Seq: seq, Active: active, Fallback: fallback, Slots: [2]bootguard.Entry{a, b}}
	}
	A, B, N := bootguard.SlotA, bootguard.SlotB, bootguard.SlotNone
	trial := rec(7, B, A, goodA, trialB)
	loading := rec(8, B, A, goodA, with(trialB, func(e *bootguard.Entry) { e.Tries, e.Crumb = 1, bootguard.CrumbLoading }))
	good := rec(5, A, N, goodA, bootguard.Entry{})
	newer := rec(9, A, N, goodA, with(trialB, func(e *bootguard.Entry) { e.State = bootguard.StateStaged }))
	zero := make([]byte, bootguard.CopySize)
	v := map[string][]byte{
		"empty-file":                        {},
		"short-file":                        enc(good)[:300],
		"copy0-only":                        enc(good),
		"zeros":                             make([]byte, bootguard.FileSize),
		"fresh":                             both(rec(1, N, N, bootguard.Entry{}, bootguard.Entry{})),
		"copy1-only":                        file(zero, enc(good)),
		"copy1-newer":                       file(enc(good), enc(trial)),
		"copy0-newer":                       file(enc(trial), enc(good)),
		"seq-tie":                           file(enc(rec(4, A, N, goodA, bootguard.Entry{})), enc(rec(4, B, A, goodA, trialB))),
		"both-corrupt":                      file(patch(enc(good), 100, 0xff), patch(enc(trial), 200, 0xff)),
		"crc-bit-flip":                      file(patch(enc(trial), 20, enc(trial)[20]^1), enc(good)),
		"bad-magic":                         file(fixCRC(patch(enc(trial), 0, 'X')), enc(good)),
		"bad-version":                       file(fixCRC(patch(enc(trial), 4, 2)), enc(good)),
		"bad-size":                          file(fixCRC(patch(enc(trial), 7, 1)), enc(good)),
		"state-out-of-range":                patchCRC(trial, 32+40, 5),
		"crumb-out-of-range":                patchCRC(trial, 96+43, 3),
		"reason-out-of-range":               patchCRC(trial, 96+44, 7),
		"active-out-of-range":               patchCRC(trial, 16, 3),
		"fallback-out-of-range":             patchCRC(trial, 17, 9),
		"reserved-ignored":                  file(fixCRC(patch(enc(trial), 20, 0xaa)), enc(good)),
		"torn-copy0":                        file(append(enc(newer)[:256], enc(good)[256:]...), enc(rec(4, A, N, goodA, bootguard.Entry{}))),
		"torn-copy1":                        file(enc(good), append(enc(newer)[:256], enc(rec(4, A, N, goodA, bootguard.Entry{}))[256:]...)),
		"good":                              both(good),
		"trial-fresh":                       both(trial),
		"trial-load-crash":                  both(loading),
		"trial-load-crash-no-fallback":      both(rec(8, B, N, bootguard.Entry{}, with(trialB, func(e *bootguard.Entry) { e.Crumb = bootguard.CrumbLoading }))),
		"trial-load-tries-2":                both(rec(8, B, A, goodA, with(trialB, func(e *bootguard.Entry) { e.Tries, e.LoadTries, e.Crumb = 2, 2, bootguard.CrumbLoading }))),
		"trial-loaded-tries-left":           both(rec(8, B, A, goodA, with(trialB, func(e *bootguard.Entry) { e.Tries, e.Crumb = 1, bootguard.CrumbLoaded }))),
		"trial-tries-exhausted":             both(rec(9, B, A, goodA, with(trialB, func(e *bootguard.Entry) { e.Tries, e.Crumb = 0, bootguard.CrumbLoaded }))),
		"trial-tries-exhausted-no-fallback": both(rec(9, B, N, goodA, with(trialB, func(e *bootguard.Entry) { e.Tries, e.Crumb = 0, bootguard.CrumbLoaded }))),
		"trial-load-tries-zero":             both(rec(8, B, A, goodA, with(trialB, func(e *bootguard.Entry) { e.LoadTries, e.Crumb = 0, bootguard.CrumbLoading }))),
		"fallback-is-active":                both(rec(8, B, B, goodA, with(trialB, func(e *bootguard.Entry) { e.Crumb = bootguard.CrumbLoading }))),
		"fallback-not-good":                 both(rec(8, B, A, with(goodA, func(e *bootguard.Entry) { e.State = bootguard.StateBad }), with(trialB, func(e *bootguard.Entry) { e.Crumb = bootguard.CrumbLoading }))),
		"active-staged-fallback-good":       both(rec(3, B, A, goodA, with(trialB, func(e *bootguard.Entry) { e.State = bootguard.StateStaged }))),
		"active-staged-no-fallback":         both(rec(3, B, N, goodA, with(trialB, func(e *bootguard.Entry) { e.State = bootguard.StateStaged }))),
		"active-empty":                      both(rec(3, A, N, bootguard.Entry{}, bootguard.Entry{})),
		"active-bad-fallback-good":          both(rec(3, B, A, goodA, with(trialB, func(e *bootguard.Entry) { e.State, e.Reason = bootguard.StateBad, bootguard.ReasonManual }))),
		"active-bad-no-fallback":            both(rec(3, B, N, goodA, with(trialB, func(e *bootguard.Entry) { e.State, e.Reason = bootguard.StateBad, bootguard.ReasonManual }))),
		"no-active-good-slot":               both(rec(3, N, N, goodA, bootguard.Entry{})),
		"seq-top-valid":                     both(rec(bootguard.MaxSeq, B, A, goodA, trialB)),
		"seq-above-max":                     file(enc(rec(bootguard.MaxSeq+1, B, A, goodA, trialB)), enc(good)),
		"seq-max-uint64":                    file(enc(good), enc(rec(math.MaxUint64, B, A, goodA, trialB))),
		"max-channel-version":               both(rec(6, A, N, with(goodA, func(e *bootguard.Entry) { e.Channel, e.Version = math.MaxUint32, math.MaxUint32 }), bootguard.Entry{})),
		"longer-file":                       append(both(trial), []byte("trailing bytes a reader must ignore")...),
	}
	return v
}

// want is the canonical output both implementations print for a file.
func want(data []byte) string {
	rec, from, ok := bootguard.Pick(data)
	d := bootguard.Decide(rec, ok)
	target, written := "-", "-"
	if d.Write {
		target = fmt.Sprint(1 - from)
		b := d.Next.Encode()
		written = hex.EncodeToString(b[:])
	}
	return fmt.Sprintf("%v target=%s\n%s\n", d, target, written)
}

func TestVectors(t *testing.T) {
	vs := vectors()
	if *updateVectors {
		require.NoError(t, os.MkdirAll(vectorDir, 0o755))
		// Only the single-record vectors: multi/ is TestMultiChannelVectors'.
		old, _ := filepath.Glob(filepath.Join(vectorDir, "*.bin"))
		wants, _ := filepath.Glob(filepath.Join(vectorDir, "*.want"))
		for _, p := range append(old, wants...) {
			require.NoError(t, os.Remove(p))
		}
		for name, data := range vs {
			require.NoError(t, os.WriteFile(filepath.Join(vectorDir, name+".bin"), data, 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(vectorDir, name+".want"), []byte(want(data)), 0o644))
		}
	}
	names := vectorNames(t)
	require.ElementsMatch(t, mapKeys(vs), names, "testdata/bootrecord and the table disagree; run go test ./bootguard -run TestVectors -update")
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(vectorDir, name+".bin"))
		require.NoError(t, err)
		require.Equal(t, vs[name], data, "%s.bin is stale; run with -update", name)
		w, err := os.ReadFile(filepath.Join(vectorDir, name+".want"))
		require.NoError(t, err)
		require.Equal(t, string(w), want(data), "%s: the Go implementation disagrees with %s.want", name, name)
	}
}

// buildHarness compiles bootguard/c/<name>.c with the reference loader, as
// a driver would build it (C99, every warning an error), with the system C
// compiler (cc, or $CC); without one the test is skipped, saying so.
func buildHarness(t *testing.T, name string) string {
	t.Helper()
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		t.Skipf("no C compiler (%s): the C loader was not checked against %s's vectors; install gcc (make deps) to run it", cc, name)
	}
	bin := filepath.Join(testtmp.Dir(t), name)
	out, err := exec.Command(cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2",
		"-o", bin, filepath.Join("c", name+".c"), filepath.Join("c", "rfbootrec.c")).CombinedOutput()
	require.NoError(t, err, "compile the C %s:\n%s", name, out)
	return bin
}

// TestVectorsC runs the reference loader in C on every vector: its output
// must be byte-identical to the .want file.
func TestVectorsC(t *testing.T) {
	bin := buildHarness(t, "harness")
	names := vectorNames(t)
	require.NotEmpty(t, names)
	for _, name := range names {
		got, err := exec.Command(bin, filepath.Join(vectorDir, name+".bin")).Output()
		require.NoError(t, err, name)
		w, err := os.ReadFile(filepath.Join(vectorDir, name+".want"))
		require.NoError(t, err)
		require.Equal(t, string(w), string(got), "%s: the C loader disagrees with the vector", name)
	}
	t.Logf("C loader agrees with the Go code on %d vectors", len(names))
}

// TestVectorWritesLand: where a vector's decision writes, the bytes placed
// at the target copy make the reader find exactly the decided next record.
func TestVectorWritesLand(t *testing.T) {
	for name, data := range vectors() {
		rec, from, ok := bootguard.Pick(data)
		d := bootguard.Decide(rec, ok)
		if !d.Write {
			continue
		}
		f := make([]byte, bootguard.FileSize)
		copy(f, data)
		b := d.Next.Encode()
		copy(f[(1-from)*bootguard.CopySize:], b[:])
		got, _, ok := bootguard.Pick(f)
		require.True(t, ok, name)
		if d.Next.Seq > bootguard.MaxSeq {
			// The write past MaxSeq is invalid on read: at one write a
			// second, 292 billion years away.
			continue
		}
		require.Equal(t, d.Next, got, name)
	}
}

func vectorNames(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(vectorDir, "*.bin"))
	require.NoError(t, err)
	var names []string
	for _, p := range paths {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".bin"))
	}
	return names
}

func mapKeys(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

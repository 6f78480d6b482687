package bootguard_test

import (
	"encoding/hex"
	"flag"
	"fmt"
	"hash/crc32"
	"maps"
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
	// stopped is a trial whose agent stopped cleanly after its load, as
	// MarkStopped leaves the file: STOPPED in copy 0, and in copy 1 the
	// LOADED record MarkStopped read (what a reader that does not know
	// STOPPED falls back to).
	stopped := func(tries uint8) []byte {
		loaded := rec(8, B, A, goodA, with(trialB, func(e *bootguard.Entry) { e.Tries, e.Crumb = tries, bootguard.CrumbLoaded }))
		st := loaded
		st.Seq++
		st.Entry(B).Crumb = bootguard.CrumbStopped
		return file(enc(st), enc(loaded))
	}
	zero := make([]byte, bootguard.CopySize)
	// trial-stopped*: after a clean stop the trial loads again and no try
	// is spent, with no tries left too: the boot that loaded it spent its
	// try then, the clean stop is no evidence against the content, and the
	// next crash of any kind (LOADING or LOADED at the boot after) reverts
	// it, as it would have without the clean stop.
	//
	// seq-*: serial-number arithmetic over uint64 (bootguard.Newer). A
	// trial at 2^63-1 writes 2^63 (readable: no sequence number is
	// invalid), and one at 2^64-1 writes 0; 0 is newer than 2^64-1 in
	// either copy; copies exactly 2^63 apart, or equal, give copy 0; a copy
	// at 2^63 is newer than one at 5, and one at 2^64-1 is older than one
	// at 5 (six behind).
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
		"crumb-out-of-range":                patchCRC(trial, 96+43, 4),
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
		"trial-stopped":                     stopped(1),
		"trial-stopped-tries-zero":          stopped(0),
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
		"seq-crosses-2p63":                  both(rec(1<<63-1, B, A, goodA, trialB)),
		"seq-wraps-to-0":                    both(rec(math.MaxUint64, B, A, goodA, trialB)),
		"seq-wrap-copy1-newer":              file(enc(rec(math.MaxUint64, A, N, goodA, bootguard.Entry{})), enc(rec(0, B, A, goodA, trialB))),
		"seq-wrap-copy0-newer":              file(enc(rec(0, B, A, goodA, trialB)), enc(rec(math.MaxUint64, A, N, goodA, bootguard.Entry{}))),
		"seq-tie-2p63-apart":                file(enc(rec(3, B, A, goodA, trialB)), enc(rec(1<<63+3, A, N, goodA, bootguard.Entry{}))),
		"seq-2p63-newer":                    file(enc(rec(1<<63, B, A, goodA, trialB)), enc(good)),
		"seq-max-uint64-older":              file(enc(good), enc(rec(math.MaxUint64, B, A, goodA, trialB))),
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

// cCompiler returns the system C compiler (cc, or $CC), or skips the test,
// saying what was not checked.
func cCompiler(t *testing.T, unchecked string) string {
	t.Helper()
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		t.Skipf("no C compiler (%s): %s; install gcc (make deps) to run it", cc, unchecked)
	}
	return cc
}

// buildHarness compiles bootguard/c/<name>.c with the reference loader, as
// a driver would build it (C99, every warning an error), with the system C
// compiler (cc, or $CC); without one the test is skipped, saying so.
func buildHarness(t *testing.T, name string) string {
	t.Helper()
	cc := cCompiler(t, fmt.Sprintf("the C loader was not checked against %s's vectors", name))
	bin := filepath.Join(testtmp.Dir(t), name)
	out, err := exec.Command(cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2",
		"-o", bin, filepath.Join("c", name+".c"), filepath.Join("c", "rfbootrec.c")).CombinedOutput()
	require.NoError(t, err, "compile the C %s:\n%s", name, out)
	return bin
}

// TestFuzzSelectCompiles: the C loader's libFuzzer target (fuzz/run.sh builds
// and runs it with clang where the fuzzer runtime is) compiles as C99 with
// every warning an error, with the system C compiler, so a change to the
// loader's interface breaks it here too, not only where clang is.
func TestFuzzSelectCompiles(t *testing.T) {
	cc := cCompiler(t, "bootguard/c/fuzz_select.c was not compiled")
	out, err := exec.Command(cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-c",
		"-o", filepath.Join(testtmp.Dir(t), "fuzz_select.o"), filepath.Join("c", "fuzz_select.c")).CombinedOutput()
	require.NoError(t, err, "compile bootguard/c/fuzz_select.c:\n%s", out)
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
// at the target copy make the reader pick that copy next, and find exactly
// the decided next record in it.
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
		got, to, ok := bootguard.Pick(f)
		require.True(t, ok, "%s: the written copy does not decode", name)
		require.Equal(t, 1-from, to, "%s: the written copy is not the one picked next", name)
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

// TestMarkLoadedC holds the C loader's rfbr_mark_loaded to bootguard.MarkLoaded
// on every vector, as read, as left by its own select's write (a trial
// then has the breadcrumb LOADING, the case a kernel loader marks) and as
// left by a MarkLoaded after that: the same outcome (an error, nothing to
// write, a write) and, after the write, the same bytes on disk.
func TestMarkLoadedC(t *testing.T) {
	testMarkC(t, "mark-loaded", bootguard.MarkLoaded)
}

// TestMarkStoppedC does the same for rfbr_mark_stopped and
// bootguard.MarkStopped, the clean stop (the records after a finished load
// are the ones it changes).
func TestMarkStoppedC(t *testing.T) {
	testMarkC(t, "mark-stopped", bootguard.MarkStopped)
}

// markFiles are the vectors, each after its select's write, and each of
// those after MarkLoaded: the records a loader marks.
func markFiles(t *testing.T) map[string][]byte {
	files := map[string][]byte{}
	for name, data := range vectors() {
		files[name] = data
		rec, from, ok := bootguard.Pick(data)
		if d := bootguard.Decide(rec, ok); d.Write {
			f := make([]byte, bootguard.FileSize)
			copy(f, data)
			b := d.Next.Encode()
			copy(f[(1-from)*bootguard.CopySize:], b[:])
			files[name+"+select"] = f
			p := filepath.Join(testtmp.Dir(t), "record")
			require.NoError(t, os.WriteFile(p, f, 0o600))
			if bootguard.MarkLoaded(p) == nil {
				loaded, err := os.ReadFile(p)
				require.NoError(t, err)
				files[name+"+select+loaded"] = loaded
			}
		}
	}
	return files
}

// testMarkC runs the C harness's --flag and goMark on every markFiles
// record and requires the same outcome and the same bytes.
func testMarkC(t *testing.T, flag string, goMark func(path string) error) {
	bin := buildHarness(t, "harness")
	files := markFiles(t)
	writes := 0
	for _, name := range slices.Sorted(maps.Keys(files)) {
		data := files[name]
		dir := testtmp.Dir(t)
		goPath, cPath := filepath.Join(dir, "go"), filepath.Join(dir, "c")
		require.NoError(t, os.WriteFile(goPath, data, 0o600))
		require.NoError(t, os.WriteFile(cPath, data, 0o600))

		goErr := goMark(goPath)
		after, err := os.ReadFile(goPath)
		require.NoError(t, err)
		want := 1
		switch {
		case goErr != nil:
			want = -1
		case string(after) == string(data):
			want = 0
		}

		out, err := exec.Command(bin, "--"+flag, cPath).Output()
		require.NoError(t, err, name)
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		require.Len(t, lines, 2, "%s: %s", name, out)
		var got, target int
		_, err = fmt.Sscanf(lines[0], flag+"=%d target=%d", &got, &target)
		require.NoError(t, err, "%s: %s", name, out)
		require.Equal(t, want, got, "%s: C %s and Go (%v) disagree", name, flag, goErr)
		if got != 1 {
			require.Equal(t, -1, target, name)
			continue
		}
		writes++
		copyBytes, err := hex.DecodeString(lines[1])
		require.NoError(t, err, name)
		c := slices.Clone(data)
		if n := (target + 1) * bootguard.CopySize; len(c) < n {
			c = append(c, make([]byte, n-len(c))...)
		}
		copy(c[target*bootguard.CopySize:], copyBytes)
		require.Equal(t, hex.EncodeToString(after), hex.EncodeToString(c), "%s: the file after C's write differs from Go's", name)
	}
	require.Positive(t, writes, "no vector exercised a write")
	t.Logf("C %s agrees with Go on %d records (%d writes)", flag, len(files), writes)
}

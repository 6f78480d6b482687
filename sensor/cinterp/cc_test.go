package cinterp

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/stretchr/testify/require"
)

// These tests run the host C compiler on sensor/c/rfinterp.c directly and
// need no cgo.

var source = filepath.Join("..", "c", "rfinterp.c")

// kernelFlags are the constraints the kernel module's build puts on the
// file, as a user-space compiler can check them: freestanding, no VLAs, no
// frame of 512 bytes or more, declarations first, every warning an error.
var kernelFlags = []string{
	"-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wdeclaration-after-statement", "-Wvla",
	"-Wmissing-prototypes", "-Wstrict-prototypes", "-Wimplicit-fallthrough", "-Wframe-larger-than=512",
	"-ffreestanding", "-fno-builtin", "-Werror",
}

// compilers returns the C compilers to build with: cc (or $CC) and
// clang-14 (or clang), those that are installed; it skips the test when
// there is none, saying what was not checked.
func compilers(t *testing.T, unchecked string) []string {
	t.Helper()
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	var out []string
	for _, c := range []string{cc, "clang-14", "clang"} {
		if _, err := exec.LookPath(c); err == nil && !slices.Contains(out, c) {
			out = append(out, c)
		}
		if c == "clang-14" && slices.Contains(out, c) {
			break // clang-14 found: not clang as well
		}
	}
	if len(out) == 0 {
		t.Skipf("no C compiler (%s or clang): %s; install gcc (make deps) to run it", cc, unchecked)
	}
	return out
}

// TestFreestandingBuild: rfinterp.c compiles with the kernel's constraints
// with every compiler at hand, in both builds (checked, and
// RFI_LEGACY_UNCHECKED), and the object calls nothing outside the file but
// memcpy, memset and memcmp.
func TestFreestandingBuild(t *testing.T) {
	allowed := []string{"memcpy", "memset", "memcmp", "_GLOBAL_OFFSET_TABLE_"}
	dir := testtmp.Dir(t)
	for _, cc := range compilers(t, "sensor/c/rfinterp.c was not compiled freestanding") {
		for _, def := range []string{"", "-DRFI_LEGACY_UNCHECKED"} {
			obj := filepath.Join(dir, strings.ReplaceAll(cc+def, "/", "_")+".o")
			args := append(slices.Clone(kernelFlags), "-c", "-o", obj, source)
			if def != "" {
				args = append([]string{def}, args...)
			}
			out, err := exec.Command(cc, args...).CombinedOutput()
			require.NoError(t, err, "%s %s:\n%s", cc, strings.Join(args, " "), out)
			ef, err := elf.Open(obj)
			if err != nil {
				t.Logf("%s: not an ELF object (%v); its symbols are not checked", cc, err)
				continue
			}
			syms, err := ef.Symbols()
			ef.Close()
			require.NoError(t, err)
			for _, s := range syms {
				if s.Section == elf.SHN_UNDEF && s.Name != "" && !slices.Contains(allowed, s.Name) {
					t.Errorf("%s %s: rfinterp.c calls %s; the kernel build may use only memcpy, memset and memcmp", cc, def, s.Name)
				}
			}
		}
	}
}

// TestLegacyDiffersOnlyInBoundsCheck: the RFI_LEGACY_UNCHECKED build (the
// one the kernel VM test crashes) is the checked build without the bounds
// check of the 2024 read, and nothing else. The preprocessed sources are
// compared: running the unchecked build in this process would crash it.
func TestLegacyDiffersOnlyInBoundsCheck(t *testing.T) {
	cc := compilers(t, "the RFI_LEGACY_UNCHECKED build was not compared with the checked one")[0]
	preprocess := func(def ...string) []string {
		args := append(def, "-E", "-P", "-std=gnu11", "-ffreestanding", source)
		out, err := exec.Command(cc, args...).Output()
		require.NoError(t, err, "%s %s", cc, strings.Join(args, " "))
		var lines []string
		for _, l := range strings.Split(string(out), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
		return lines
	}
	checked, legacy := preprocess(), preprocess("-DRFI_LEGACY_UNCHECKED")
	i := 0
	for i < len(legacy) && checked[i] == legacy[i] {
		i++
	}
	want := []string{"if (m->field >= p->ninputs)", "return (-13);"} // RFI_E_FIELD
	require.Less(t, i, len(legacy), "the two builds do not differ")
	require.Equal(t, want, checked[i:min(i+len(want), len(checked))], "what the checked build has that the legacy one lacks")
	require.Equal(t, legacy[i:], checked[i+len(want):], "the builds differ after the bounds check too")
	require.Equal(t, "x = p->in[m->field];", legacy[i], "the unchecked read follows where the check was")
}

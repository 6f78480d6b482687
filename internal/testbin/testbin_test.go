package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/filelock"
)

func run(t *testing.T, exe string) string {
	t.Helper()
	out, err := exec.Command(exe).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return strings.TrimSpace(string(out))
}

// TestBuild: one build per distinct set, shared by every later call; other
// flags are another build.
func TestBuild(t *testing.T) {
	const pkg = "./testdata/hello"
	dir := Build(t, pkg)
	require.Equal(t, "hello", run(t, Exe(dir, pkg)))
	require.Equal(t, filepath.Join(dir, "hello"+Ext), Exe(dir, pkg))
	require.Equal(t, dir, Build(t, pkg), "built once per process")

	bye := BuildWith(t, Options{Flags: []string{"-ldflags", "-X main.word=bye"}}, pkg)
	require.NotEqual(t, dir, bye)
	require.Equal(t, "bye", run(t, Exe(bye, pkg)))
	require.Equal(t, "hello", run(t, Exe(dir, pkg)), "the first build is untouched")

	// The process's directory is locked: no other process sweeps it.
	_, err := filelock.Lock(filepath.Join(filepath.Dir(dir), lockName), 0)
	require.ErrorIs(t, err, filelock.ErrLocked)
}

// TestBuildError: a failed build says which and why.
func TestBuildError(t *testing.T) {
	pkgs := []string{"./testdata/missing"}
	b := builds.get(Options{}, pkgs)
	_, err := b.build(Options{}, pkgs)
	require.ErrorContains(t, err, "testdata/missing")
}

// TestSweep: the directories of ended processes go; a live process's, a
// young one and what is not the package's stay.
func TestSweep(t *testing.T) {
	base := t.TempDir()
	now := time.Now()
	old := now.Add(-2 * sweepAge)
	mk := func(name string, lock bool, mtime time.Time) string {
		dir := filepath.Join(base, name)
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "1"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "1", "bin"), []byte("x"), 0o755))
		if lock {
			require.NoError(t, os.WriteFile(filepath.Join(dir, lockName), nil, 0o600))
			require.NoError(t, os.Chtimes(filepath.Join(dir, lockName), mtime, mtime))
		}
		require.NoError(t, os.Chtimes(dir, mtime, mtime))
		return dir
	}
	ended := mk(prefix+"ended", true, old)
	bare := mk(prefix+"bare", false, old)
	young := mk(prefix+"young", true, now)
	alive := mk(prefix+"alive", true, old)
	other := mk("someone-else", true, old)
	unlock, err := filelock.Lock(filepath.Join(alive, lockName), 0)
	require.NoError(t, err)
	defer unlock()

	sweep(base, now)
	for dir, kept := range map[string]bool{ended: false, bare: false, young: true, alive: true, other: true} {
		_, err := os.Stat(filepath.Join(dir, "1", "bin"))
		require.Equal(t, kept, err == nil, "%s: %v", filepath.Base(dir), err)
	}
}

package atomicfile_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/failpoint"
	"github.com/ringfence/ringfence/internal/testtmp"
)

const (
	// envHelperTarget tells TestHelperProcess, running as a child, which
	// file to write.
	envHelperTarget = "RINGFENCE_ATOMICFILE_HELPER_TARGET"
	// helperDone is printed by the child after WriteFile returned.
	helperDone = "atomicfile-helper: done"
)

// Contents for the crash test; lengths differ so that a torn write cannot look
// complete.
var (
	crashOld = bytes.Repeat([]byte("old content\n"), 1000)
	crashNew = bytes.Repeat([]byte("NEW CONTENT, LONGER\n"), 20000)
)

// TestHelperProcess is not a test: TestCrash runs the test binary with
// -test.run=^TestHelperProcess$ so that the child writes crashNew to the file
// named in envHelperTarget, dying at the failpoint named in
// failpoint.EnvKill.
func TestHelperProcess(t *testing.T) {
	target := os.Getenv(envHelperTarget)
	if target == "" {
		t.Skip("helper process for TestCrash")
	}
	if err := atomicfile.WriteFile(target, crashNew, 0o644); err != nil {
		t.Fatal(err)
	}
	fmt.Println(helperDone)
}

// runHelper runs TestHelperProcess in a child with the extra environment
// variables env, writing target. It reports whether the child finished the
// write, and returns its stderr.
func runHelper(t *testing.T, target string, env ...string) (done bool, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), envHelperTarget+"="+target)
	cmd.Env = append(cmd.Env, env...)
	var stdout, errBuf bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &errBuf
	err := cmd.Run()
	done = strings.Contains(stdout.String(), helperDone)
	if done {
		require.NoError(t, err, "child finished the write but failed: %s", errBuf.String())
	} else {
		require.Error(t, err, "child neither finished nor died: %s%s", stdout.String(), errBuf.String())
	}
	return done, errBuf.String()
}

// TestCrash kills a child process at each failpoint of WriteFile in turn and
// checks that the target holds the complete old or the complete new content,
// whichever the crash point implies, and that Cleanup removes what the crash
// left behind.
func TestCrash(t *testing.T) {
	// Which target each crash point must leave: before the rename the old
	// file, from the rename on the new one.
	tests := []struct {
		failpoint string
		wantNew   bool
	}{
		{"atomicfile/after-create", false},
		{"atomicfile/after-write", false},
		{"atomicfile/after-sync", false},
		{"atomicfile/after-close", false},
		{"atomicfile/after-rename", true},
		{"atomicfile/after-dirsync", true},
	}

	t.Run("trace", func(t *testing.T) {
		// The table must list every failpoint that WriteFile passes, in order.
		target := filepath.Join(testtmp.Dir(t), "target")
		done, stderr := runHelper(t, target, failpoint.EnvTrace+"=1")
		require.True(t, done)
		var got, want []string
		sc := bufio.NewScanner(strings.NewReader(stderr))
		for sc.Scan() {
			if name, ok := strings.CutPrefix(sc.Text(), failpoint.TracePrefix); ok {
				got = append(got, name)
			}
		}
		for _, tt := range tests {
			want = append(want, tt.failpoint)
		}
		assert.Equal(t, want, got)
	})

	for _, existing := range []bool{true, false} {
		for _, tt := range tests {
			name := tt.failpoint
			if !existing {
				name += "/no-target"
			}
			t.Run(name, func(t *testing.T) {
				dir := testtmp.Dir(t)
				target := filepath.Join(dir, "target")
				if existing {
					require.NoError(t, os.WriteFile(target, crashOld, 0o644))
				}

				done, stderr := runHelper(t, target, failpoint.EnvKill+"="+tt.failpoint)
				require.False(t, done, "child was not killed at %s: %s", tt.failpoint, stderr)

				got, err := os.ReadFile(target)
				switch {
				case tt.wantNew:
					require.NoError(t, err)
					assert.True(t, bytes.Equal(crashNew, got), "target is not the complete new content (%d bytes)", len(got))
				case existing:
					require.NoError(t, err)
					assert.True(t, bytes.Equal(crashOld, got), "target is not the complete old content (%d bytes)", len(got))
				default:
					assert.ErrorIs(t, err, os.ErrNotExist, "a crash before the rename created the target")
				}

				require.NoError(t, atomicfile.Cleanup(dir))
				want := []string(nil)
				if existing || tt.wantNew {
					want = []string{"target"}
				}
				assert.Equal(t, want, dirNames(t, dir), "Cleanup leaves only the target")
			})
		}
	}
}

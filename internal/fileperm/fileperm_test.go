package fileperm_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/fileperm"
	"github.com/ringfence/ringfence/internal/testperm"
	"github.com/ringfence/ringfence/internal/testtmp"
)

// makeWithMode creates a file or directory named name in a temporary
// directory (testtmp: t.TempDir's cleanup fails under Wine) with exactly
// mode, skipping the test where chmod does not stick.
func makeWithMode(t *testing.T, name string, dir bool, mode fs.FileMode) string {
	t.Helper()
	path := filepath.Join(testtmp.Dir(t), name)
	var err error
	if dir {
		err = os.Mkdir(path, 0o700)
	} else {
		err = os.WriteFile(path, []byte("x"), 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if testperm.Meaningful && fi.Mode().Perm() != mode {
		t.Skipf("chmod %04o does not stick here (mode %04o)", uint32(mode), uint32(fi.Mode().Perm()))
	}
	return path
}

func TestChecks(t *testing.T) {
	private, secret := fileperm.CheckPrivate, fileperm.CheckSecret
	tests := []struct {
		name  string
		check func(path, what string) error
		mode  fs.FileMode
		want  string // how the refusal describes the mode; "" accepts it
	}{
		{"CheckPrivate", private, 0o700, ""},
		{"CheckPrivate", private, 0o750, ""},
		{"CheckPrivate", private, 0o770, "group-writable"},
		{"CheckPrivate", private, 0o777, "world-writable"},
		{"CheckPrivate", private, 0o600, ""},
		{"CheckPrivate", private, 0o644, ""},
		{"CheckPrivate", private, 0o666, "world-writable"},
		{"CheckSecret", secret, 0o700, ""},
		{"CheckSecret", secret, 0o750, "group-readable"},
		{"CheckSecret", secret, 0o770, "group-writable"},
		{"CheckSecret", secret, 0o777, "world-writable"},
		{"CheckSecret", secret, 0o600, ""},
		{"CheckSecret", secret, 0o644, "world-readable"},
		{"CheckSecret", secret, 0o666, "world-writable"},
	}
	for _, tc := range tests {
		for _, dir := range []bool{false, true} {
			kind, fixed := "file", fs.FileMode(0o600)
			if dir {
				kind, fixed = "directory", 0o700
			}
			t.Run(fmt.Sprintf("%s/%s/%04o", tc.name, kind, uint32(tc.mode)), func(t *testing.T) {
				path := makeWithMode(t, "x", dir, tc.mode)
				what := "test " + kind
				err := tc.check(path, what)
				if tc.want == "" || !testperm.Meaningful {
					if err != nil {
						t.Fatalf("%v, want nil", err)
					}
					return
				}
				if !errors.Is(err, fileperm.ErrTooOpen) {
					t.Fatalf("%v, want ErrTooOpen", err)
				}
				for _, s := range []string{
					fmt.Sprintf("%s %s is %s (mode %04o): ", what, path, tc.want, uint32(tc.mode)),
					"could ",
					fmt.Sprintf("; run 'chmod %o %s'", uint32(fixed), path),
				} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				// The advice works.
				if err := os.Chmod(path, fixed); err != nil {
					t.Fatal(err)
				}
				if err := tc.check(path, what); err != nil {
					t.Errorf("after the advised chmod: %v", err)
				}
			})
		}
	}
}

// TestMissing: a path that is not there is the stat error, not a refusal
// (callers decide whether missing is fine).
func TestMissing(t *testing.T) {
	if !testperm.Meaningful {
		t.Skip("no checks on this platform")
	}
	path := filepath.Join(testtmp.Dir(t), "nothing")
	for _, check := range []func(string, string) error{fileperm.CheckPrivate, fileperm.CheckSecret} {
		err := check(path, "test file")
		if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, fileperm.ErrTooOpen) {
			t.Errorf("%v, want fs.ErrNotExist and not ErrTooOpen", err)
		}
	}
}

// TestAdviceQuotesPath: the chmod in the advice can be pasted into a shell
// as it is, whatever the path holds.
func TestAdviceQuotesPath(t *testing.T) {
	if !testperm.Meaningful {
		t.Skip("no checks on this platform")
	}
	tests := []struct{ test, name, quoted string }{
		{"plain", "plain-name_1.txt", "%s/plain-name_1.txt"},
		{"space", "with space", `"%s/with space"`},
		{"shell", `a"b$c`, `"%s/a\"b\$c"`},
		{"option", "-rf", "%s/-rf"},
	}
	for _, tc := range tests {
		t.Run(tc.test, func(t *testing.T) {
			path := makeWithMode(t, tc.name, false, 0o666)
			err := fileperm.CheckPrivate(path, "test file")
			want := fmt.Sprintf("run 'chmod 600 "+tc.quoted+"'", filepath.Dir(path))
			if err == nil || !strings.HasSuffix(err.Error(), want) {
				t.Errorf("%v, want it to end %q", err, want)
			}
		})
	}
}

// TestAdviceRelativeOption: a relative path that looks like an option is
// advised as ./path, so chmod does not take it for one.
func TestAdviceRelativeOption(t *testing.T) {
	if !testperm.Meaningful {
		t.Skip("no checks on this platform")
	}
	path := makeWithMode(t, "-rf", false, 0o666)
	t.Chdir(filepath.Dir(path))
	err := fileperm.CheckPrivate("-rf", "test file")
	if want := "run 'chmod 600 ./-rf'"; err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("%v, want it to end %q", err, want)
	}
}

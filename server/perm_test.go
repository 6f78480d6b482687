package server

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

// wantRefusal checks that err is a permission refusal that says what,
// path, how, the mode and the chmod to run.
func wantRefusal(t *testing.T, err error, what, path, how string, mode fs.FileMode, fix string) {
	t.Helper()
	if !errors.Is(err, fileperm.ErrTooOpen) {
		t.Fatalf("%v, want a refusal (fileperm.ErrTooOpen)", err)
	}
	for _, s := range []string{
		fmt.Sprintf("server: %s %s is %s (mode %04o): ", what, path, how, uint32(mode)),
		fmt.Sprintf("run 'chmod %s %s'", fix, path),
	} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
}

func TestCheckStateDir(t *testing.T) {
	tests := []struct {
		mode fs.FileMode
		how  string // "" accepts
	}{
		{0o700, ""},
		{0o750, ""},
		{0o755, ""},
		{0o770, "group-writable"},
		{0o777, "world-writable"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%04o", uint32(tc.mode)), func(t *testing.T) {
			dir := filepath.Join(testtmp.Dir(t), "state")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			testperm.Chmod(t, dir, tc.mode)
			err := checkStateDir(dir)
			if tc.how == "" {
				if err != nil {
					t.Fatalf("%v, want nil", err)
				}
				return
			}
			wantRefusal(t, err, "state directory", dir, tc.how, tc.mode, "700")
		})
	}
	t.Run("missing", func(t *testing.T) {
		// New creates it (0700) when it is not there yet.
		if err := checkStateDir(filepath.Join(testtmp.Dir(t), "state")); err != nil {
			t.Fatalf("%v, want nil", err)
		}
	})
}

// TestTokenPerms: an operator token others can read or write is refused,
// and left as it was; a new token is made 0600 and loads again.
func TestTokenPerms(t *testing.T) {
	const token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		mode fs.FileMode
		how  string // "" accepts
	}{
		{0o600, ""},
		{0o400, ""},
		{0o640, "group-readable"},
		{0o644, "world-readable"},
		{0o660, "group-writable"},
		{0o666, "world-writable"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%04o", uint32(tc.mode)), func(t *testing.T) {
			dir := testtmp.Dir(t)
			path := filepath.Join(dir, TokenFile)
			if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			testperm.Chmod(t, path, tc.mode)
			got, err := LoadOrCreateToken(dir)
			if tc.how == "" {
				if err != nil || got != token {
					t.Fatalf("LoadOrCreateToken = %q, %v; want the token", got, err)
				}
				return
			}
			wantRefusal(t, err, "operator token", path, tc.how, tc.mode, "600")
			if !strings.Contains(err.Error(), "remove it instead and a new token is made") {
				t.Errorf("error %q does not say how to replace a token that may have leaked", err)
			}
			if b, err := os.ReadFile(path); err != nil || string(b) != token+"\n" {
				t.Errorf("token file now %q, %v; want it untouched", b, err)
			}
		})
	}
	t.Run("new", func(t *testing.T) {
		dir := filepath.Join(testtmp.Dir(t), "state")
		first, err := LoadOrCreateToken(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkStateDir(dir); err != nil {
			t.Errorf("the state directory New makes: %v", err)
		}
		if again, err := LoadOrCreateToken(dir); err != nil || again != first {
			t.Errorf("reload: %q, %v; want %q", again, err, first)
		}
	})
}

// TestTokenInOpenStateDir: a private token in a world-writable state
// directory still loads (LoadOrCreateToken checks only the file); it is
// checkStateDir that refuses the directory.
func TestTokenInOpenStateDir(t *testing.T) {
	dir := filepath.Join(testtmp.Dir(t), "state")
	tok, err := LoadOrCreateToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	testperm.Chmod(t, dir, 0o777)
	if got, err := LoadOrCreateToken(dir); err != nil || got != tok {
		t.Fatalf("LoadOrCreateToken = %q, %v; want the token", got, err)
	}
	wantRefusal(t, checkStateDir(dir), "state directory", dir, "world-writable", 0o777, "700")
}

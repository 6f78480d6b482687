package server

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/testtmp"
)

const outsideSecret = "PRIVATE KEY MATERIAL"

// staticTree makes a repository directory and, beside it, files it must
// never serve:
//
//	private.key, outside/private.key     not in the repository
//	repo/metadata/timestamp.json, 1.root.json
//	repo/targets/<sha256>.content.bin    a hash-prefixed target
//	repo/targets/alias -> ../metadata/timestamp.json (stays inside)
//	repo/targets/escape -> ../../private.key
//	repo/targets/absolute -> <tmp>/private.key
//	repo/targets/dir -> ../../outside   (a directory that escapes)
//
// Symlinks that cannot be made here (Windows without the privilege) are
// left out; the rows that need them skip.
func staticTree(t *testing.T) (repo string, links map[string]bool) {
	t.Helper()
	tmp := testtmp.Dir(t)
	repo = filepath.Join(tmp, "repo")
	files := map[string]string{
		"private.key":                               outsideSecret,
		"outside/private.key":                       outsideSecret,
		"repo/metadata/timestamp.json":              `{"timestamp":1}`,
		"repo/metadata/1.root.json":                 `{"root":1}`,
		"repo/targets/" + hashName + ".content.bin": "content",
		"repo/targets/sub/file.bin":                 "in a subdirectory",
	}
	for name, data := range files {
		p := filepath.Join(tmp, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links = map[string]bool{}
	for name, target := range map[string]string{
		"alias":    filepath.FromSlash("../metadata/timestamp.json"),
		"escape":   filepath.FromSlash("../../private.key"),
		"absolute": filepath.Join(tmp, "private.key"),
		"dir":      filepath.FromSlash("../../outside"),
	} {
		links[name] = os.Symlink(target, filepath.Join(repo, "targets", name)) == nil
	}
	return repo, links
}

const hashName = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// newTestStatic opens a staticRepo on dir and closes its root when the test
// ends (before the directory is removed: Windows keeps an open directory).
func newTestStatic(t *testing.T, dir string) *staticRepo {
	t.Helper()
	s := newStaticRepo(dir)
	t.Cleanup(func() {
		if s.root != nil {
			s.root.Close()
		}
	})
	return s
}

func serveStatic(s http.Handler, target string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

func TestStaticServes(t *testing.T) {
	repo, links := staticTree(t)
	s := newTestStatic(t, repo)
	checkins := 0
	s.checkins = func() { checkins++ }
	tests := []struct {
		target, link string // link: the symlink the row needs
		body, cache  string
	}{
		{"/metadata/timestamp.json", "", `{"timestamp":1}`, "no-cache"},
		{"/metadata/1.root.json", "", `{"root":1}`, "public, max-age=31536000, immutable"},
		{"/targets/" + hashName + ".content.bin", "", "content", "public, max-age=31536000, immutable"},
		{"/targets/sub/file.bin", "", "in a subdirectory", "no-cache"},
		{"/targets/alias", "alias", `{"timestamp":1}`, "no-cache"},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			if tc.link != "" && !links[tc.link] {
				t.Skip("symlinks cannot be made here")
			}
			w := serveStatic(s, tc.target)
			if w.Code != http.StatusOK || w.Body.String() != tc.body {
				t.Fatalf("%d %q, want 200 %q", w.Code, w.Body, tc.body)
			}
			tag := w.Header().Get("ETag")
			if !strings.HasPrefix(tag, `"`) || len(tag) != 34 {
				t.Errorf("ETag %q, want a quoted 32-hex-digit tag", tag)
			}
			if got := w.Header().Get("Cache-Control"); got != tc.cache {
				t.Errorf("Cache-Control %q, want %q", got, tc.cache)
			}
			// A conditional request with that tag is a 304 with no body.
			w = serveStatic(s, tc.target, "If-None-Match", tag)
			if w.Code != http.StatusNotModified || w.Body.Len() != 0 {
				t.Errorf("If-None-Match: %d %q, want 304 and no body", w.Code, w.Body)
			}
			if again := serveStatic(s, tc.target).Header().Get("ETag"); again != tag {
				t.Errorf("ETag changed from %q to %q with the file unchanged", tag, again)
			}
		})
	}
	if checkins != 3 {
		t.Errorf("checkins hook called %d times, want 3 (the timestamp.json requests)", checkins)
	}
}

// TestStaticStaysInside: nothing outside the repository directory is
// served, however the name or a symlink points there; every refusal is a
// 404 that must not be cached.
func TestStaticStaysInside(t *testing.T) {
	repo, links := staticTree(t)
	big := filepath.Join(repo, "targets", "big.bin")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(maxServed + 1); err != nil { // sparse
		t.Fatal(err)
	}
	f.Close()
	s := newTestStatic(t, repo)
	tests := []struct {
		name, target string
		link         string // the symlink the row needs
		// opened: the name reaches the repository directory (the others
		// are refused by name, before any file is looked at); its 404
		// says no-store, so no cache keeps the answer.
		opened bool
	}{
		{"symlink out", "/targets/escape", "escape", true},
		{"absolute symlink", "/targets/absolute", "absolute", true},
		{"symlinked directory out", "/targets/dir/private.key", "dir", true},
		{"dot-dot", "/targets/../private.key", "", false},
		{"dot-dot twice", "/targets/../../private.key", "", false},
		{"encoded dot-dot", "/targets/%2e%2e/%2e%2e/private.key", "", false},
		{"encoded slash", "/targets/..%2f..%2fprivate.key", "", false},
		{"encoded all", "/targets%2f%2e%2e%2f%2e%2e%2fprivate.key", "", false},
		{"encoded out of metadata", "/metadata/%2E%2E/%2E%2E/outside/private.key", "", false},
		{"backslash", "/targets/..%5c..%5cprivate.key", "", false},
		{"outside the served trees", "/private.key", "", false},
		{"missing", "/targets/nothing.bin", "", true},
		{"a directory", "/targets/sub", "", true},
		{"larger than maxServed", "/targets/big.bin", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.link != "" && !links[tc.link] {
				t.Skip("symlinks cannot be made here")
			}
			w := serveStatic(s, tc.target)
			if w.Code != http.StatusNotFound {
				t.Errorf("%s: %d, want 404", tc.target, w.Code)
			}
			if strings.Contains(w.Body.String(), outsideSecret) {
				t.Errorf("%s: the body holds the file outside the repository", tc.target)
			}
			if got := w.Header().Get("Cache-Control"); tc.opened && got != "no-store" {
				t.Errorf("%s: Cache-Control %q, want no-store", tc.target, got)
			}
		})
	}
}

// TestStaticNoRepository: a repository directory that could not be opened
// (a ReadOnly server's) serves nothing.
func TestStaticNoRepository(t *testing.T) {
	s := newTestStatic(t, filepath.Join(testtmp.Dir(t), "none"))
	w := serveStatic(s, "/metadata/timestamp.json")
	if w.Code != http.StatusNotFound || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("%d, Cache-Control %q; want 404 no-store", w.Code, w.Header().Get("Cache-Control"))
	}
}

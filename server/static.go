package server

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// maxServed bounds a file the repository serves (targets are channel
// files and agent binaries).
const maxServed = 1 << 30

// immutableName matches names that never change content in a repository
// with consistent snapshots: versioned metadata (N.role.json) and targets
// prefixed with their hash.
var immutableName = regexp.MustCompile(`^([0-9]+\.[^/]+\.json|[0-9a-f]{64}\.[^/]+)$`)

// staticRepo serves metadata/ and targets/ of a repository directory with
// strong ETags (SHA-256 of the content, cached by path, size and mtime),
// so conditional requests cost a stat and a map lookup.
//
// Every file is opened through an os.Root on the repository directory, so
// nothing outside it is ever served: a symlink (or a symlinked directory)
// that resolves outside the repository, an absolute symlink, or a name that
// climbs out with ".." is a 404, the same as a missing file. Symlinks that
// stay inside the repository still work.
type staticRepo struct {
	// root is the repository directory, opened once by newStaticRepo: New
	// has checked by then that the repository exists (tufrepo.Open), and
	// nothing replaces the directory itself while the server runs (tufrepo
	// writes and renames files inside metadata/ and targets/), so one
	// handle stays valid and a check-in costs no extra open and close of
	// the directory (per-request roots measured about half again slower in
	// an in-process conditional GET). The cost: a repository directory
	// swapped wholesale (mv) while the server runs is not followed until a
	// restart, as the handle keeps the old directory. root is nil when the
	// directory could not be opened (a ReadOnly server, which needs no
	// repository and serves nothing): then every request is a 404. The
	// handle is released with the staticRepo (os.Root closes itself when
	// collected).
	root *os.Root

	mu   sync.Mutex
	tags map[string]etag

	checkins func() // called for every timestamp.json request
}

type etag struct {
	size  int64
	mtime time.Time
	tag   string
}

func newStaticRepo(dir string) *staticRepo {
	s := &staticRepo{tags: map[string]etag{}}
	if root, err := os.OpenRoot(dir); err == nil {
		s.root = root
	}
	return s
}

// forget drops the ETag cache (after the repository was re-signed: a file
// replaced within the mtime's resolution with the same size must not keep
// its old tag).
func (s *staticRepo) forget() {
	s.mu.Lock()
	clear(s.tags)
	s.mu.Unlock()
}

func (s *staticRepo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := path.Clean("/" + r.URL.Path)
	if !(strings.HasPrefix(name, "/metadata/") || strings.HasPrefix(name, "/targets/")) || strings.Contains(name, "\\") {
		http.NotFound(w, r)
		return
	}
	if name == "/metadata/timestamp.json" && s.checkins != nil {
		s.checkins()
	}
	if s.root == nil {
		w.Header().Set("Cache-Control", "no-store")
		http.NotFound(w, r)
		return
	}
	// name is clean and starts with "/metadata/" or "/targets/": relative
	// to the root it is local, and the root refuses whatever resolves
	// outside it.
	p := filepath.FromSlash(name[1:])
	f, err := s.root.Open(p)
	if err != nil {
		w.Header().Set("Cache-Control", "no-store")
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	// Only regular files are content (a device node inside the repository,
	// which the root lets through, is not).
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > maxServed {
		w.Header().Set("Cache-Control", "no-store")
		http.NotFound(w, r)
		return
	}
	tag, err := s.etag(p, f, fi)
	if err != nil {
		http.Error(w, "cannot read the file", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("ETag", tag)
	if immutableName.MatchString(path.Base(name)) {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		// timestamp.json, root.json: revalidate every time (a 304 is cheap).
		h.Set("Cache-Control", "no-cache")
	}
	if strings.HasSuffix(name, ".json") {
		h.Set("Content-Type", "application/json")
	} else {
		h.Set("Content-Type", "application/octet-stream")
	}
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

func (s *staticRepo) etag(p string, f *os.File, fi os.FileInfo) (string, error) {
	s.mu.Lock()
	e, ok := s.tags[p]
	s.mu.Unlock()
	if ok && e.size == fi.Size() && e.mtime.Equal(fi.ModTime()) {
		return e.tag, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, maxServed)); err != nil {
		return "", err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	tag := `"` + hex.EncodeToString(h.Sum(nil)[:16]) + `"`
	s.mu.Lock()
	if len(s.tags) > 100_000 {
		clear(s.tags)
	}
	s.tags[p] = etag{size: fi.Size(), mtime: fi.ModTime(), tag: tag}
	s.mu.Unlock()
	return tag, nil
}

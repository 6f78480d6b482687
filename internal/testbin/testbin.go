// Package testbin builds the module's commands for tests that run them as
// processes (the lab's fleet, the daemon's end-to-end tests, the service
// round trip, the agent updater's fake agent, the VM guest): each distinct
// build once per test process, however many tests ask for it.
//
// Where the binaries go, and who removes them. A test process gets one
// directory, os.TempDir()/ringfence-testbin-*, made at its first Build;
// each distinct build (packages, flags, environment) goes into a numbered
// directory inside it. No test can remove it (t.Cleanup runs when one test
// ends, and the binaries serve every test of the process), and a package
// without TestMain has no hook at its process's exit. So:
//
//  1. The process takes an advisory lock (internal/filelock) on
//     owner.lock in its directory and holds it as long as it lives; the
//     operating system drops it when the process ends, however it ends.
//  2. Before it makes its own directory, a process's first Build removes
//     every ringfence-testbin-* directory whose lock it can take: the
//     process that made it has ended.
//  3. A directory whose lock file (or, with none, the directory itself) is
//     less than a minute old is left alone: its process may have made the
//     file and not locked it yet.
//
// What stays behind is what the last test processes built, until the next
// test process that builds anything.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/filelock"
	"github.com/ringfence/ringfence/internal/testtmp"
)

// Options change how the packages are built.
type Options struct {
	// Flags go to go build before the packages: "-ldflags", "-X main.v=2",
	// "-tags", "x", "-trimpath".
	Flags []string
	// Env is added to go build's environment: "GOOS=linux", "CGO_ENABLED=0".
	Env []string
}

// Build builds the packages (import paths, or paths relative to the test's
// package directory) into a directory and returns it: each package's binary
// is named after the last element of its path, with Ext (Exe names it). The
// first call of a process builds; later calls with the same packages return
// the same directory, which the tests must not change. A failed build fails
// t (every time it is asked for).
func Build(t testing.TB, pkgs ...string) string {
	t.Helper()
	return BuildWith(t, Options{}, pkgs...)
}

// BuildWith is Build with build flags or environment. A build for another
// GOOS names its binaries for that GOOS, not with Ext.
func BuildWith(t testing.TB, o Options, pkgs ...string) string {
	t.Helper()
	if len(pkgs) == 0 {
		t.Fatal("testbin: no packages to build")
	}
	b := builds.get(o, pkgs)
	b.once.Do(func() { b.dir, b.err = b.build(o, pkgs) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.dir
}

// Exe is the path of pkg's binary in dir, a directory Build returned.
func Exe(dir, pkg string) string {
	name := path.Base(filepath.ToSlash(pkg))
	if strings.HasPrefix(pkg, ".") { // "." or "../cmd/x": the directory's name, as go build names it
		if abs, err := filepath.Abs(pkg); err == nil {
			name = filepath.Base(abs)
		}
	}
	return filepath.Join(dir, name+Ext)
}

// lockName is the file whose lock says the directory's process is alive;
// sweepAge how old a directory must be before another process may remove it.
const (
	prefix   = "ringfence-testbin-"
	lockName = "owner.lock"
	sweepAge = time.Minute
)

// builds is the process's one set of builds: the binaries are shared by
// every test of the process (that is the point), and nothing in it changes
// once built.
var builds = &registry{m: map[string]*build{}}

type registry struct {
	mu     sync.Mutex
	m      map[string]*build // by key
	dir    string            // the process's directory, once made
	dirErr error
	unlock func() // kept reachable: a collected lock file would be closed, and its lock dropped
}

type build struct {
	r    *registry
	n    int // its directory's number
	once sync.Once
	dir  string
	err  error
}

// get returns the build of pkgs with o, new or not.
func (r *registry) get(o Options, pkgs []string) *build {
	key := strings.Join(slices.Concat(o.Flags, []string{"\x00"}, o.Env, []string{"\x00"}, pkgs), "\x01")
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.m[key]
	if !ok {
		b = &build{r: r, n: len(r.m) + 1}
		r.m[key] = b
	}
	return b
}

// processDir makes the process's directory and locks it, the first time.
func (r *registry) processDir() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dir != "" || r.dirErr != nil {
		return r.dir, r.dirErr
	}
	base := os.TempDir()
	sweep(base, time.Now())
	dir, err := os.MkdirTemp(base, prefix)
	if err == nil {
		r.unlock, err = filelock.Lock(filepath.Join(dir, lockName), 0)
	}
	if err != nil {
		r.dirErr = fmt.Errorf("testbin: %w", err)
	}
	r.dir = dir
	return r.dir, r.dirErr
}

func (b *build) build(o Options, pkgs []string) (string, error) {
	pdir, err := b.r.processDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(pdir, strconv.Itoa(b.n))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("testbin: %w", err)
	}
	args := slices.Concat([]string{"build"}, o.Flags, []string{"-o", dir + string(filepath.Separator)}, pkgs)
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), o.Env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("testbin: go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return dir, nil
}

// sweep removes the directories under base of test processes that have
// ended (see the package comment).
func sweep(base string, now time.Time) {
	ents, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		dir := filepath.Join(base, e.Name())
		lock := filepath.Join(dir, lockName)
		fi, err := os.Stat(lock)
		if err != nil {
			fi, err = os.Stat(dir)
		}
		if err != nil || now.Sub(fi.ModTime()) < sweepAge {
			continue
		}
		if unlock, err := filelock.Lock(lock, 0); err == nil {
			unlock() // Windows removes no open file
			_ = testtmp.RemoveAll(dir)
		}
	}
}

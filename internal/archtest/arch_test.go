package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// rooms maps an import path prefix to the only directory trees (relative to
// the module root; "" is anywhere) whose non-test code may import it.
var rooms = map[string][]string{
	"go.etcd.io/bbolt":                     {"hostdb", "fleetdb"},
	"github.com/jackc/pgx/v5":              {"fleetpg", "internal/pgtest"}, // the PostgreSQL store, and its tests' server
	"github.com/kardianos/service":         {"cmd/ringfenced"},
	"github.com/theupdateframework/go-tuf": {"tuf", "tufrepo"},
	"github.com/sigstore/sigstore":         {"tufrepo"},
	"github.com/minio/selfupdate":          {"selfupdate"},
	"github.com/chromedp":                  {"internal/browsertest"}, // tests drive the browser through it
	"golang.org/x/time/rate":               {"server"},
	"github.com/prometheus/client_golang":  {"server", "daemon"},     // the /metrics exposition (the server's; ringfenced's optional one)
	"github.com/goreleaser/nfpm":           {"dist"},                 // the .deb and .rpm packages
	"github.com/hanwen/go-fuse":            {"internal/lazyfs"},      // the power-cut tests' recording file system
	"go.yaml.in/yaml":                      {},                       // tests only (monitoring/ reads the alert rules)
	"golang.org/x/net":                     {"cmd/ringfence-server"}, // the connection cap
	"golang.org/x/sys/windows":             {""},                     // anywhere, but only in _windows.go files (checked below)
	"github.com/ringfence/ringfence/cmd":   {},                       // nothing imports a main package
	"github.com/stretchr/testify":          {},                       // tests only

	// Tests only: the cgo binding of the kernel's C interpreter (sensor/c),
	// which a cgo-less build does not have.
	"github.com/ringfence/ringfence/sensor/cinterp": {},
}

type file struct {
	rel  string // path relative to the module root
	dir  string
	test bool
	ast  *ast.File
}

func moduleFiles(t *testing.T) []file {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	var out []file
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		out = append(out, file{rel: rel, dir: filepath.ToSlash(filepath.Dir(rel)), test: strings.HasSuffix(path, "_test.go"), ast: f})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 10 {
		t.Fatalf("found only %d Go files; is the walk rooted at the module?", len(out))
	}
	return out
}

func TestDependencyRooms(t *testing.T) {
	for _, f := range moduleFiles(t) {
		for _, imp := range f.ast.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for prefix, allowed := range rooms {
				if !strings.HasPrefix(path, prefix) || f.test {
					continue
				}
				ok := false
				for _, a := range allowed {
					ok = ok || a == "" || strings.HasPrefix(f.dir+"/", a+"/")
				}
				if !ok {
					t.Errorf("%s imports %s; only %v may", f.rel, path, allowed)
				}
			}
			if path == "golang.org/x/sys/windows" && !strings.HasSuffix(f.rel, "_windows.go") && !strings.HasSuffix(f.rel, "_windows_test.go") {
				t.Errorf("%s imports golang.org/x/sys/windows outside a _windows.go file", f.rel)
			}
		}
	}
}

func TestOnePackageDocPerDirectory(t *testing.T) {
	docs := map[string][]string{}
	dirs := map[string]bool{}
	for _, f := range moduleFiles(t) {
		if f.test {
			continue
		}
		dirs[f.dir] = true
		if f.ast.Doc != nil && strings.TrimSpace(f.ast.Doc.Text()) != "" {
			docs[f.dir] = append(docs[f.dir], f.rel)
		}
	}
	for d := range dirs {
		switch n := len(docs[d]); {
		case n == 0:
			t.Errorf("%s has no package doc comment", d)
		case n > 1:
			t.Errorf("%s has %d package doc comments (%v); keep one", d, n, docs[d])
		}
	}
}

// TestForbiddenCalls: os.Rename only in internal/atomicfile (the one durable
// rename), and no runtime.GOOS in non-test code (platform code goes in
// _windows.go / _linux.go files).
func TestForbiddenCalls(t *testing.T) {
	for _, f := range moduleFiles(t) {
		if f.test {
			continue
		}
		ast.Inspect(f.ast, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			x, ok := sel.X.(*ast.Ident)
			if !ok {
				return true
			}
			switch x.Name + "." + sel.Sel.Name {
			case "os.Rename":
				if f.dir != "internal/atomicfile" {
					t.Errorf("%s calls os.Rename; use internal/atomicfile (rename is not durable without a directory fsync)", f.rel)
				}
			case "runtime.GOOS":
				t.Errorf("%s reads runtime.GOOS; put platform code in _windows.go/_linux.go files", f.rel)
			}
			return true
		})
	}
}

// The two sides of the product and what they may share. The server side
// (the vendor's rollout server) and the host side (ringfenced and the
// recovery tools) meet only in shared packages: the wire contract, the
// rollout plan, the validator, the TUF client and the internals.
var (
	serverSide = []string{"server", "controller", "admission", "fleetdb", "fleetpg", "tufrepo", "dashboard", "fleetsim", "cmd/ringfence-server", "cmd/ringfence-sim"}
	hostSide   = []string{"hostdb", "installer", "bootguard", "loader", "daemon", "telemetry", "selfupdate", "hostconfig", "cmd/ringfenced", "cmd/ringfence"}
)

// TestSidesStayApart: no server-side package depends, directly or through
// others, on a host-side one, and the reverse (`go list -deps ./server`
// shows no hostdb, installer, bootguard, loader, daemon or telemetry).
// The lab and the tests that run both sides are exempt.
func TestSidesStayApart(t *testing.T) {
	const module = "github.com/ringfence/ringfence/"
	deps := map[string]map[string]bool{} // package dir -> module dirs it imports
	for _, f := range moduleFiles(t) {
		if f.test {
			continue
		}
		if deps[f.dir] == nil {
			deps[f.dir] = map[string]bool{}
		}
		for _, imp := range f.ast.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if dir, ok := strings.CutPrefix(path, module); ok {
				deps[f.dir][dir] = true
			}
		}
	}
	in := func(dir string, side []string) bool {
		for _, s := range side {
			if dir == s || strings.HasPrefix(dir, s+"/") {
				return true
			}
		}
		return false
	}
	check := func(from, to []string, what string) {
		for dir := range deps {
			if !in(dir, from) {
				continue
			}
			// Walk everything dir depends on, remembering the way there.
			via := map[string]string{dir: ""}
			queue := []string{dir}
			for len(queue) > 0 {
				d := queue[0]
				queue = queue[1:]
				for dep := range deps[d] {
					if _, seen := via[dep]; seen {
						continue
					}
					via[dep] = d
					if in(dep, to) {
						path := dep
						for p := d; p != ""; p = via[p] {
							path = p + " -> " + path
						}
						t.Errorf("%s package %s depends on %s (%s)", what, dir, dep, path)
						continue
					}
					queue = append(queue, dep)
				}
			}
		}
	}
	check(serverSide, hostSide, "server-side")
	check(hostSide, serverSide, "host-side")
}

// TestWineTestsUseTesttmp: the packages whose tests run under Wine (the
// list in wine/run.sh) make their temporary directories with
// internal/testtmp, never t.TempDir: Go's RemoveAll fails under Wine, and
// t.TempDir's cleanup then fails the test (a fresh CI run caught one). For
// the same reason they remove trees with testtmp.RemoveAll, not
// os.RemoveAll (a Wine run caught one).
func TestWineTestsUseTesttmp(t *testing.T) {
	script, err := os.ReadFile(filepath.Join("..", "..", "wine", "run.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`pkgs=\(([^)]*\./[^)]*)\)`).FindSubmatch(script)
	if m == nil {
		t.Fatal("wine/run.sh no longer lists its packages as pkgs=(./...); update this test")
	}
	dirs := map[string]bool{}
	for _, p := range strings.Fields(string(m[1])) {
		dirs[strings.TrimPrefix(p, "./")] = true
	}
	if len(dirs) < 5 {
		t.Fatalf("found only %v in wine/run.sh", dirs)
	}
	for _, f := range moduleFiles(t) {
		if !f.test || !dirs[f.dir] {
			continue
		}
		ast.Inspect(f.ast, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "TempDir" {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name != "os" {
					t.Errorf("%s calls %s.TempDir; its tests run under Wine: use testtmp.Dir", f.rel, x.Name)
				}
			}
			if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "RemoveAll" {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "os" && f.dir != "internal/testtmp" {
					t.Errorf("%s calls os.RemoveAll; its tests run under Wine: use testtmp.RemoveAll", f.rel)
				}
			}
			return true
		})
	}
}

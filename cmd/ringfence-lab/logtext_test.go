package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// logMethods are slog's: the message is the first argument (the second of
// the Context forms).
var logMethods = map[string]int{"Debug": 0, "Info": 0, "Warn": 0, "Error": 0,
	"DebugContext": 1, "InfoContext": 1, "WarnContext": 1, "ErrorContext": 1}

// daemonLogMessages returns the messages ringfenced logs: the string
// literals given as the message to a logger's Debug/Info/Warn/Error (a
// receiver named log or logger: d.log, h.log, log) in the non-test files of
// the dirs, directly or through a variable or constant of the file.
func daemonLogMessages(files []*ast.File) []string {
	var out []string
	for _, f := range files {
		assigned := literalsByName(f)
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			i, ok := logMethods[sel.Sel.Name]
			if !ok || len(call.Args) <= i || !isLogger(sel.X) {
				return true
			}
			if s, ok := stringValue(call.Args[i]); ok {
				out = append(out, s)
			} else if id, ok := call.Args[i].(*ast.Ident); ok {
				out = append(out, assigned[id.Name]...)
			}
			return true
		})
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// isLogger reports whether x names a logger: log, d.log, h.logger.
func isLogger(x ast.Expr) bool {
	name := ""
	switch x := x.(type) {
	case *ast.Ident:
		name = x.Name
	case *ast.SelectorExpr:
		name = x.Sel.Name
	}
	return name == "log" || name == "logger"
}

// literalsByName maps each name of the file given a string constant (var,
// const, :=, =) to those strings.
func literalsByName(f *ast.File) map[string][]string {
	out := map[string][]string{}
	add := func(lhs []ast.Expr, rhs []ast.Expr) {
		for i, l := range lhs {
			id, ok := l.(*ast.Ident)
			if !ok || i >= len(rhs) {
				continue
			}
			if s, ok := stringValue(rhs[i]); ok {
				out[id.Name] = append(out[id.Name], s)
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			add(n.Lhs, n.Rhs)
		case *ast.ValueSpec:
			var lhs []ast.Expr
			for _, id := range n.Names {
				lhs = append(lhs, id)
			}
			add(lhs, n.Values)
		}
		return true
	})
	return out
}

// stringValue is the value of a string literal, or of a sum of them.
func stringValue(e ast.Expr) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		a, ok := stringValue(e.X)
		b, ok2 := stringValue(e.Y)
		return a + b, ok && ok2
	case *ast.ParenExpr:
		return stringValue(e.X)
	}
	return "", false
}

func parseDirs(t *testing.T, dirs ...string) []*ast.File {
	t.Helper()
	var out []*ast.File
	fset := token.NewFileSet()
	for _, dir := range dirs {
		paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
		require.NoError(t, err)
		require.NotEmpty(t, paths, dir)
		for _, p := range paths {
			if strings.HasSuffix(p, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
			require.NoError(t, err)
			out = append(out, f)
		}
	}
	return out
}

// labLiteral is a string literal of the lab's code and whether it is
// compared with something: a case, an operand of == or !=, or an argument
// of a strings or bytes function (Contains, HasPrefix, Cut, ...), itself or
// through the name it is given (const msgPoll = "poll"; case msgPoll).
type labLiteral struct {
	s        string
	compared bool
	pos      string
}

func labLiterals(t *testing.T, dir string) []labLiteral {
	t.Helper()
	fset := token.NewFileSet()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	require.NoError(t, err)
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		files = append(files, f)
	}
	// The expressions compared, and the names among them (any file's).
	compared, names := map[ast.Expr]bool{}, map[string]bool{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			var es []ast.Expr
			switch n := n.(type) {
			case *ast.CaseClause:
				es = n.List
			case *ast.BinaryExpr:
				if n.Op == token.EQL || n.Op == token.NEQ {
					es = []ast.Expr{n.X, n.Y}
				}
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok {
					if pkg, ok := sel.X.(*ast.Ident); ok && (pkg.Name == "strings" || pkg.Name == "bytes") {
						es = n.Args
					}
				}
			}
			for _, e := range es {
				compared[e] = true
				if id, ok := e.(*ast.Ident); ok {
					names[id.Name] = true
				}
			}
			return true
		})
	}
	// A literal given a name: the names it is given.
	given := map[ast.Expr][]string{}
	name := func(lhs []*ast.Ident, rhs []ast.Expr) {
		for i, id := range lhs {
			if i < len(rhs) {
				given[rhs[i]] = append(given[rhs[i]], id.Name)
			}
		}
	}
	var out []labLiteral
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ValueSpec:
				name(n.Names, n.Values)
			case *ast.AssignStmt:
				var lhs []*ast.Ident
				for _, l := range n.Lhs {
					if id, ok := l.(*ast.Ident); ok {
						lhs = append(lhs, id)
					} else {
						lhs = append(lhs, ast.NewIdent("_"))
					}
				}
				name(lhs, n.Rhs)
			case *ast.BasicLit:
				if s, ok := stringValue(n); ok {
					c := compared[n] || slices.ContainsFunc(given[n], func(x string) bool { return names[x] })
					out = append(out, labLiteral{s: s, compared: c, pos: fset.Position(n.Pos()).String()})
				}
			}
			return true
		})
	}
	return out
}

// readsLogText says why lit reads a daemon's log message msg, if it does:
// it is the whole message (of one word: and compared), it holds a message
// of three words or more, or it is a fragment of three words or more of one.
// (A one-word message is a word the lab uses too: "root"; a two-word one
// may be part of its prose: "ringfenced started".)
func readsLogText(lit labLiteral, msg string) (string, bool) {
	words := func(s string) int { return len(strings.Fields(s)) }
	switch {
	case strings.TrimSpace(lit.s) == "":
		return "", false
	case lit.s == msg && (words(msg) > 1 || lit.compared):
		return "is the daemon's log message", true
	case words(msg) >= 3 && strings.Contains(lit.s, msg):
		return "holds the daemon's log message", true
	case words(lit.s) >= 3 && strings.Contains(msg, lit.s):
		return "is part of the daemon's log message", true
	}
	return "", false
}

// TestLabReadsNoLogText: the lab learns what hosts did from their journals,
// their status and the server's API, never from a daemon's log text, so a
// log message can be reworded without breaking the lab. It fails when a
// non-test file of the lab holds the text of a message ringfenced logs.
func TestLabReadsNoLogText(t *testing.T) {
	msgs := daemonLogMessages(parseDirs(t, filepath.Join("..", "..", "daemon"), filepath.Join("..", "ringfenced")))
	require.GreaterOrEqual(t, len(msgs), 10, "the messages were found (TestDaemonLogMessages says how): %q", msgs)

	for _, lit := range labLiterals(t, ".") {
		for _, msg := range msgs {
			if why, ok := readsLogText(lit, msg); ok {
				t.Errorf("%s: %q %s %q: read the host's journal (wire events) or status instead", lit.pos, lit.s, why, msg)
			}
		}
	}
}

// TestReadsLogText: the guard's rule, on literals that read log text and
// ones that do not.
func TestReadsLogText(t *testing.T) {
	const msg = "content installed as a trial; restarting the agent to load it"
	tests := []struct {
		lit  labLiteral
		msg  string
		want bool
	}{
		{labLiteral{s: msg}, msg, true},
		{labLiteral{s: "msg=\"" + msg + "\""}, msg, true},
		{labLiteral{s: "content installed as"}, msg, true},
		{labLiteral{s: "installed"}, msg, false},
		{labLiteral{s: "the agent"}, msg, false},
		{labLiteral{s: "poll", compared: true}, "poll", true},
		{labLiteral{s: "poll"}, "poll", false},
		{labLiteral{s: "root"}, "root", false},
		{labLiteral{s: "a poll within 2 s"}, "poll", false},
		{labLiteral{s: " "}, "poll", false},
		{labLiteral{s: "trial started"}, "trial started", true},
		{labLiteral{s: "fleet: ringfenced started, each with its own root"}, "ringfenced started", false},
	}
	for _, tt := range tests {
		_, got := readsLogText(tt.lit, tt.msg)
		require.Equal(t, tt.want, got, "%q vs %q", tt.lit.s, tt.msg)
	}
}

// TestDaemonLogMessages: the messages found are those given to a logger,
// directly or through a name, whatever their words.
func TestDaemonLogMessages(t *testing.T) {
	const src = `package daemon

const msgStop = "stopping"

func (d *Daemon) f(ctx context.Context, h *handler) {
	d.log.Info("direct", "k", 1)
	msg := "through a variable"
	if x {
		msg = "or another value"
	}
	d.log.Warn(msg, "k", 2)
	d.logger.Error(msgStop)
	log.Debug("a " + "sum")
	h.log.InfoContext(ctx, "with a context")
	h.el.Error(7, "not a logger")
	d.log.Info(fmt.Sprint("not a literal"))
	t.Error("not a logger either")
}
`
	f, err := parser.ParseFile(token.NewFileSet(), "daemon.go", src, parser.SkipObjectResolution)
	require.NoError(t, err)
	require.Equal(t, []string{"a sum", "direct", "or another value", "stopping", "through a variable", "with a context"},
		daemonLogMessages([]*ast.File{f}))
}

package cli_test

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/cli"
)

// echo is a command that prints its name and arguments and returns code.
func echo(name string, code int) func([]string, io.Writer, io.Writer) int {
	return func(args []string, stdout, _ io.Writer) int {
		stdout.Write([]byte(name + " " + strings.Join(args, " ") + "\n"))
		return code
	}
}

func TestDispatch(t *testing.T) {
	tab := cli.Table{
		Prog: "prog", Title: "does things", Usage: "COMMAND [flags]", ExitCodes: "Exit codes: 0 ok.",
		Commands: []cli.Command{
			{Name: "build", Summary: "build one", Run: echo("build", 0)},
			{Name: "mark-good", Summary: "mark it", Run: echo("mark-good", 1)},
		},
	}
	const help = `prog: does things

Usage: prog COMMAND [flags]

Commands:
  build      build one
  mark-good  mark it

Run 'prog COMMAND --help' for a command's flags.
Exit codes: 0 ok.
`
	for _, tc := range []struct {
		name           string
		args           []string
		code           int
		stdout, stderr string
	}{
		{"no arguments: help, usage error", nil, cli.ExitUsage, help, ""},
		{"help", []string{"help"}, cli.ExitOK, help, ""},
		{"--help", []string{"--help"}, cli.ExitOK, help, ""},
		{"-h", []string{"-h"}, cli.ExitOK, help, ""},
		{"a command, its code", []string{"mark-good", "a", "--b"}, 1, "mark-good a --b\n", ""},
		{"unknown", []string{"frob"}, cli.ExitUsage, "", "prog: unknown command \"frob\"; run 'prog help' for the list\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			require.Equal(t, tc.code, tab.Dispatch(tc.args, &out, &errb))
			require.Equal(t, tc.stdout, out.String())
			require.Equal(t, tc.stderr, errb.String())
		})
	}
}

func TestSub(t *testing.T) {
	subs := []cli.Command{
		{Name: "init", Summary: "create it", Run: echo("init", 0)},
		{Name: "verify", Summary: "check it", Run: echo("verify", 1)},
		{Name: "refresh", Run: echo("refresh", 0)},
	}
	const list = `Usage: prog repo SUBCOMMAND [flags] [args]

Subcommands:
  init     create it
  verify   check it
  refresh

Run 'prog repo SUBCOMMAND --help' for a subcommand's flags.
`
	for _, tc := range []struct {
		name           string
		subs           []cli.Command
		args           []string
		code           int
		stdout, stderr string
	}{
		{"a subcommand, its code", subs, []string{"verify", "x"}, 1, "verify x\n", ""},
		{"help lists, in table order", subs, []string{"--help"}, cli.ExitOK, list, ""},
		{"none", subs, nil, cli.ExitUsage, "", "prog repo: want a subcommand, one of: init, verify, refresh (run 'prog repo help' for what each does)\n"},
		{"unknown", subs, []string{"nit"}, cli.ExitUsage, "", "prog repo: unknown subcommand \"nit\"; want one of: init, verify, refresh\n"},
		{"the table's own help wins", append(subs[:1:1], cli.Command{Name: "help", Run: echo("own help", 0)}), []string{"help"}, cli.ExitOK, "own help \n", ""},
		{"--help runs the table's own help", append(subs[:1:1], cli.Command{Name: "help", Run: echo("own help", 0)}), []string{"--help"}, cli.ExitOK, "own help \n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			require.Equal(t, tc.code, cli.Sub("prog repo", tc.args, tc.subs, &out, &errb))
			require.Equal(t, tc.stdout, out.String())
			require.Equal(t, tc.stderr, errb.String())
		})
	}
}

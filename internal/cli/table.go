package cli

import (
	"fmt"
	"io"
	"strings"
)

// Command is one row of a command table: a command's name, the one line
// the help prints for it, and what runs it with the arguments after its
// name.
type Command struct {
	Name    string
	Summary string
	Run     func(args []string, stdout, stderr io.Writer) int
}

// Table is a program's commands, in the order its help lists them.
type Table struct {
	Prog      string // the program's name: "ringfence"
	Title     string // what the program is, the help's first line
	Usage     string // what follows Prog in the usage line: "COMMAND [flags] [args]"
	ExitCodes string // the help's last line
	Commands  []Command
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool { return arg == "-h" || arg == "--help" || arg == "help" }

// Help prints the program's help: title, usage, one line per command, and
// how to get a command's flags.
func (t Table) Help(w io.Writer) {
	fmt.Fprintf(w, "%s: %s\n\nUsage: %s %s\n\nCommands:\n", t.Prog, t.Title, t.Prog, t.Usage)
	listCommands(w, t.Commands)
	fmt.Fprintf(w, "\nRun '%s COMMAND --help' for a command's flags.\n", t.Prog)
	if t.ExitCodes != "" {
		fmt.Fprintln(w, t.ExitCodes)
	}
}

// Dispatch runs the command args[0] names with the rest of args. With no
// arguments it prints the help and returns ExitUsage; for -h, --help or
// help it prints the help and returns ExitOK; an unknown command is
// ExitUsage, with a pointer to the help.
func (t Table) Dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || isHelp(args[0]) {
		t.Help(stdout)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	if c, ok := find(t.Commands, args[0]); ok {
		return c.Run(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "%s: unknown command %q; run '%s help' for the list\n", t.Prog, args[0], t.Prog)
	return ExitUsage
}

// Sub dispatches a command that has subcommands ("hosts list", "repo
// init"): cmd is the command as the user typed it ("ringfence-server
// hosts"). -h, --help and help run the subcommand named help if subs has
// one, and otherwise list the subcommands on stdout (ExitOK). No
// subcommand, or an unknown one, names them on stderr (ExitUsage).
func Sub(cmd string, args []string, subs []Command, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		name := args[0]
		if isHelp(name) {
			name = "help"
		}
		if c, ok := find(subs, name); ok {
			return c.Run(args[1:], stdout, stderr)
		}
		if isHelp(args[0]) {
			fmt.Fprintf(stdout, "Usage: %s SUBCOMMAND [flags] [args]\n\nSubcommands:\n", cmd)
			listCommands(stdout, subs)
			fmt.Fprintf(stdout, "\nRun '%s SUBCOMMAND --help' for a subcommand's flags.\n", cmd)
			return ExitOK
		}
		fmt.Fprintf(stderr, "%s: unknown subcommand %q; want one of: %s\n", cmd, args[0], names(subs))
		return ExitUsage
	}
	fmt.Fprintf(stderr, "%s: want a subcommand, one of: %s (run '%s help' for what each does)\n", cmd, names(subs), cmd)
	return ExitUsage
}

func find(cmds []Command, name string) (Command, bool) {
	for _, c := range cmds {
		if c.Name == name {
			return c, true
		}
	}
	return Command{}, false
}

func names(cmds []Command) string {
	var n []string
	for _, c := range cmds {
		n = append(n, c.Name)
	}
	return strings.Join(n, ", ")
}

// listCommands prints one indented line per command, summaries aligned.
func listCommands(w io.Writer, cmds []Command) {
	width := 0
	for _, c := range cmds {
		width = max(width, len(c.Name))
	}
	for _, c := range cmds {
		if c.Summary == "" {
			fmt.Fprintf(w, "  %s\n", c.Name)
			continue
		}
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.Name, c.Summary)
	}
}

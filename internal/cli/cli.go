// Package cli holds what Ringfence's commands share: flag sets whose --help
// prints a synopsis and a description, flags accepted anywhere among the
// arguments, and the exit codes.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit codes shared by every command.
const (
	ExitOK       = 0
	ExitRejected = 1
	ExitUsage    = 2
)

// NewFlags returns a flag set whose --help prints synopsis, description and
// flags to stdout.
func NewFlags(prog, name, synopsis, description string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: %s %s\n\n%s\n\nFlags:\n", prog, synopsis, strings.TrimSpace(description))
		fs.PrintDefaults()
	}
	return fs
}

// ParseArgs parses flags wherever they appear among the positional
// arguments (package flag stops at the first positional one); everything
// after "--" is positional. It returns the positional arguments, or false
// and the exit code to return.
func ParseArgs(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, int, bool) {
	var rest []string
	for i, a := range args {
		if a == "--" {
			args, rest = args[:i], args[i+1:]
			break
		}
	}
	// Package flag prints the usage itself on -h and on a bad flag: keep it
	// quiet while parsing, then print it once, to stdout for -h (asked
	// for) and to stderr after an error.
	usage := fs.Usage
	fs.Usage = func() {}
	defer func() { fs.Usage = usage }()
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(stdout)
				usage()
				return nil, ExitOK, false
			}
			usage()
			return nil, ExitUsage, false
		}
		args = fs.Args()
		if len(args) == 0 {
			return append(pos, rest...), 0, true
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// Command ringfence is the operator's tool for channel content and for a
// host's content slots: it validates and preflights channel files, builds
// them from their JSON description, runs the reference sensor's preflight
// harness, installs content offline, runs the loader contract, shows a
// host's status and recovers a host offline.
//
// Exit codes: 0 success, 1 the content was rejected, 2 usage or I/O error.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/ringfence/ringfence/internal/cli"
)

// Exit codes shared by every subcommand.
const (
	exitOK       = cli.ExitOK
	exitRejected = cli.ExitRejected
	exitUsage    = cli.ExitUsage
)

func newFlags(name, synopsis, description string, stdout, stderr io.Writer) *flag.FlagSet {
	return cli.NewFlags("ringfence", name, synopsis, description, stdout, stderr)
}

var parseArgs = cli.ParseArgs

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"validate", "check channel files against an interpreter's capabilities, optionally preflight them", runValidate},
		{"channel", "build a channel file from its JSON description, or dump one as JSON", runChannel},
		{"sensor", "the reference sensor: 'sensor preflight' is the default preflight command", runSensor},
		{"fetch", "refresh signed metadata from a TUF repository and download verified targets", runFetch},
		{"install", "validate, preflight, stage and activate a channel file as TRIAL (offline)", runInstall},
		{"boot", "run the loader contract once, as a loader does at boot, and print the decision", runBoot},
		{"mark-good", "end the health window by hand: the trial becomes last-known-good", runMarkGood},
		{"status", "show slots, versions, states, tries, breadcrumb, last-known-good and history", runStatus},
		{"recover", "offline recovery: make the last-known-good (or a version, or nothing) active", runRecover},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "ringfence: unknown command %q; run 'ringfence help' for the list\n", args[0])
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "ringfence: safe content updates for kernel-level agents")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: ringfence COMMAND [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'ringfence COMMAND --help' for a command's flags.")
	fmt.Fprintln(w, "Exit codes: 0 success, 1 content rejected, 2 usage or I/O error.")
}

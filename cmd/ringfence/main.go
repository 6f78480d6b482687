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

func commands() []cli.Command {
	return []cli.Command{
		{Name: "validate", Summary: "check channel files against an interpreter's capabilities, optionally preflight them", Run: runValidate},
		{Name: "channel", Summary: "build a channel file from its JSON description, or dump one as JSON", Run: runChannel},
		{Name: "sensor", Summary: "the reference sensor: 'sensor preflight' is the default preflight command", Run: runSensor},
		{Name: "fetch", Summary: "refresh signed metadata from a TUF repository and download verified targets", Run: runFetch},
		{Name: "install", Summary: "validate, preflight, stage and activate a channel file as TRIAL (offline)", Run: runInstall},
		{Name: "boot", Summary: "run the loader contract once, as a loader does at boot, and print the decision", Run: runBoot},
		{Name: "mark-good", Summary: "end the health window by hand: the trial becomes last-known-good", Run: runMarkGood},
		{Name: "status", Summary: "show slots, versions, states, tries, breadcrumb, last-known-good and history", Run: runStatus},
		{Name: "recover", Summary: "offline recovery: make the last-known-good (or a version, or nothing) active", Run: runRecover},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	return cli.Table{
		Prog:      "ringfence",
		Title:     "safe content updates for kernel-level agents",
		Usage:     "COMMAND [flags] [args]",
		ExitCodes: "Exit codes: 0 success, 1 content rejected, 2 usage or I/O error.",
		Commands:  commands(),
	}.Dispatch(args, stdout, stderr)
}

package main

import (
	"fmt"
	"io"

	"github.com/ringfence/ringfence/sensor"
)

func runSensor(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "preflight" {
		return sensor.PreflightMain(args[1:], stdout, stderr)
	}
	fmt.Fprintln(stderr, `Usage: ringfence sensor preflight [--capabilities FILE] [--seed N] [--events N] FILE

Runs the reference sensor's preflight harness on one channel file in this
process: loads it, evaluates events synthesized to reach every referenced
field, then random events. Prints a JSON report and exits 0, or describes the
crash on stderr and exits 3 (1: the file did not load, 2: usage).
'ringfence validate --preflight' runs this in a child process with limits.`)
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		return exitOK
	}
	return exitUsage
}

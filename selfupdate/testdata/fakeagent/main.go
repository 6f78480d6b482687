// Command fakeagent plays ringfenced for the agentupdate tests: it calls
// Start, prints its version, and either applies an update, confirms, or
// fails its first start, as its arguments say.
package main

import (
	"crypto/sha256"
	"fmt"
	"os"

	"github.com/ringfence/ringfence/selfupdate"
)

var (
	version   = "dev"
	failTrial = "" // "yes": die before Confirm on a trial start
)

func main() {
	exe, state := os.Args[1], os.Args[2]
	d, err := selfupdate.Start(exe, state, version)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fmt.Println(version, d)
	switch {
	case d == selfupdate.Restart:
		os.Exit(1)
	case d == selfupdate.Trial && failTrial == "yes":
		os.Exit(3)
	case d == selfupdate.Trial:
		if err := selfupdate.Confirm(state); err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
	}
	// fakeagent EXE STATE apply NEWBIN TOVERSION [bad-sum]
	if len(os.Args) > 5 && os.Args[3] == "apply" {
		b, err := os.ReadFile(os.Args[4])
		if err != nil {
			os.Exit(2)
		}
		sum := sha256.Sum256(b)
		if len(os.Args) > 6 && os.Args[6] == "bad-sum" {
			sum[0] ^= 1
		}
		if err := selfupdate.Apply(exe, os.Args[4], sum, version, os.Args[5], state); err != nil {
			fmt.Println("apply error", err)
			os.Exit(4)
		}
		fmt.Println("applied")
	}
}

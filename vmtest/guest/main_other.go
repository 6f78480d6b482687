//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "guest: the VM test's init runs only as PID 1 of a Linux guest")
	os.Exit(2)
}

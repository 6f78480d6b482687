package main

import (
	"fmt"
	"io"
	"os"

	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/validator"
)

const channelHelp = `
build reads the JSON description of a channel file (docs/channel-file-format.md,
"JSON description") and writes its canonical binary encoding. dump prints the
JSON description of a binary channel file; build of dump's output gives back the
same bytes.

Examples:
  ringfence channel build -o out.rfch testdata/channels/src/good-ipc-1001.json
  ringfence channel dump testdata/channels/cf291-shape.rfch`

func runChannel(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "build" && args[0] != "dump") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintf(stdout, "Usage: ringfence channel build -o OUT SRC.json | ringfence channel dump FILE\n%s\n", channelHelp)
			return exitOK
		}
		fmt.Fprintln(stderr, "ringfence channel: want 'build' or 'dump'; see 'ringfence channel --help'")
		return exitUsage
	}
	sub := args[0]
	fs := newFlags("channel "+sub, "channel build -o OUT SRC.json | channel dump FILE", channelHelp, stdout, stderr)
	out := fs.String("o", "", "output file (build only; required)")
	files, code, ok := parseArgs(fs, args[1:], stdout)
	if !ok {
		return code
	}
	if len(files) != 1 {
		fmt.Fprintf(stderr, "ringfence channel %s: want exactly one file\n", sub)
		return exitUsage
	}
	if sub == "dump" {
		data, err := validator.ReadFile(files[0])
		if err != nil {
			fmt.Fprintf(stderr, "ringfence channel dump: %v\n", err)
			return exitUsage
		}
		f, err := validator.Parse(data)
		if err != nil {
			fmt.Fprintf(stderr, "ringfence channel dump: %s: %v\n", files[0], err)
			return exitRejected
		}
		src, err := validator.EncodeSource(f)
		if err != nil {
			fmt.Fprintf(stderr, "ringfence channel dump: %v\n", err)
			return exitRejected
		}
		_, _ = stdout.Write(src)
		return exitOK
	}
	if *out == "" {
		fmt.Fprintln(stderr, "ringfence channel build: -o OUT is required")
		return exitUsage
	}
	src, err := os.ReadFile(files[0])
	if err != nil {
		fmt.Fprintf(stderr, "ringfence channel build: %v\n", err)
		return exitUsage
	}
	f, err := validator.DecodeSource(src)
	if err != nil {
		fmt.Fprintf(stderr, "ringfence channel build: %s: %v\n", files[0], err)
		return exitRejected
	}
	data, err := validator.Encode(f)
	if err != nil {
		fmt.Fprintf(stderr, "ringfence channel build: %s: %v\n", files[0], err)
		return exitRejected
	}
	if err := atomicfile.WriteFile(*out, data, 0o644); err != nil {
		fmt.Fprintf(stderr, "ringfence channel build: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stdout, "%s: channel %d, version %d, %d instances, %d bytes, sha256 %x\n", *out, f.Channel, f.ContentVersion, len(f.Instances), len(data), f.Checksum)
	return exitOK
}

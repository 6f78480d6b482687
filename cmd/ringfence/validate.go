package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/validator"
)

const validateHelp = `
Validate checks each channel file against the capabilities of the interpreter
that will run it: structure, checksum, limits, every field an instance reads is
one the interpreter supplies, matcher types, pattern complexity, duplicates and
contradictions. With --preflight it then loads each file that passed into the
interpreter in a child process, with time and memory limits, and drives it with
synthesized and random events.

--skip-static switches the static checks off and leaves only preflight: that is
the 2024 validator bug, modelled, and shows preflight catching what it missed.

Output: "FILE: CODE: message" per problem (warnings say "warning:"), and
"FILE: ok ..." for accepted files. Exit 0 all accepted, 1 any rejected, 2 usage
or I/O error.

Example:
  ringfence validate --capabilities testdata/capabilities/sensor-7.11.json \
      testdata/channels/cf291-shape.rfch`

type fileResult struct {
	File           string             `json:"file"`
	Valid          bool               `json:"valid"`
	Channel        uint32             `json:"channel,omitempty"`
	ContentVersion uint32             `json:"content_version,omitempty"`
	Instances      int                `json:"instances,omitempty"`
	Preflight      string             `json:"preflight"` // "passed", "failed", "not run"
	Problems       validator.Problems `json:"problems"`

	verdict validator.Verdict // for printResult
}

func runValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", "validate [flags] FILE...", validateHelp, stdout, stderr)
	capsPath := fs.String("capabilities", "", "capability manifest of the installed interpreter (default: built-in sensor "+sensor.Version+")")
	preflight := fs.Bool("preflight", false, "also run each accepted file in the interpreter in a sandboxed child process")
	skipStatic := fs.Bool("skip-static", false, "skip the static checks; needs --preflight (models the 2024 validator bug)")
	asJSON := fs.Bool("json", false, "print a JSON array of results instead of lines")
	installed := fs.String("installed", "", "CHANNEL:VERSION installed on the host; files of that channel must be newer")
	command := fs.String("preflight-command", "", "preflight command (space-separated, no quoting); the file path is appended (default: this binary's reference sensor)")
	timeout := fs.Duration("preflight-timeout", validator.DefaultPreflightTimeout, "time limit of one preflight run, child start included")
	memory := fs.Uint64("preflight-memory-mib", validator.DefaultPreflightMemory>>20, "memory limit of the preflight child in MiB")
	files, code, ok := parseArgs(fs, args, stdout)
	if !ok {
		return code
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, "ringfence validate: no files given; see 'ringfence validate --help'")
		return exitUsage
	}
	if *skipStatic && !*preflight {
		fmt.Fprintln(stderr, "ringfence validate: --skip-static without --preflight would check nothing; add --preflight")
		return exitUsage
	}
	caps, err := sensor.LoadCapabilities(*capsPath)
	if err != nil {
		fmt.Fprintf(stderr, "ringfence validate: %v\n", err)
		return exitUsage
	}
	opts := validator.VetOptions{SkipStatic: *skipStatic}
	if *installed != "" {
		in, err := parseInstalled(*installed)
		if err != nil {
			fmt.Fprintf(stderr, "ringfence validate: --installed: %v\n", err)
			return exitUsage
		}
		opts.Installed = in
	}
	if *preflight {
		opts.Preflight = &validator.PreflightOptions{Timeout: *timeout, MaxMemory: *memory << 20}
		if *command != "" {
			opts.Preflight.Command = strings.Fields(*command)
		} else {
			cmd, err := referencePreflight(*capsPath)
			if err != nil {
				fmt.Fprintf(stderr, "ringfence validate: %v; pass --preflight-command\n", err)
				return exitUsage
			}
			opts.Preflight.Command = cmd
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var results []fileResult
	exit := exitOK
	for _, path := range files {
		r, err := validateOne(ctx, path, caps, opts)
		if err != nil {
			fmt.Fprintf(stderr, "ringfence validate: %s: %v\n", path, err)
			return exitUsage
		}
		if !r.Valid {
			exit = exitRejected
		}
		if *asJSON {
			results = append(results, r)
			continue
		}
		printResult(stdout, r)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			fmt.Fprintf(stderr, "ringfence validate: %v\n", err)
			return exitUsage
		}
	}
	return exit
}

// validateOne vets the file at path as the hosts will.
func validateOne(ctx context.Context, path string, caps *validator.Capabilities, opts validator.VetOptions) (fileResult, error) {
	r := fileResult{File: path, Preflight: "not run", Problems: validator.Problems{}}
	data, err := validator.ReadFile(path)
	if err != nil {
		return r, err
	}
	v, err := validator.Vet(ctx, data, caps, opts)
	if err != nil {
		return r, err
	}
	r.verdict = v
	r.Valid = v.Accepted()
	r.Problems = append(r.Problems, v.Problems...)
	if v.File != nil {
		r.Channel, r.ContentVersion, r.Instances = v.File.Channel, v.File.ContentVersion, len(v.File.Instances)
	}
	switch {
	case v.RefusedBy == validator.StagePreflight:
		r.Preflight = "failed"
	case v.Preflighted:
		r.Preflight = "passed"
	}
	return r, nil
}

func printResult(w io.Writer, r fileResult) {
	r.verdict.Print(w, r.File)
	if !r.Valid {
		return
	}
	var what []string
	if r.Channel != 0 || r.ContentVersion != 0 {
		what = append(what, fmt.Sprintf("channel %d, version %d, %d instances", r.Channel, r.ContentVersion, r.Instances))
	}
	if r.Preflight == "passed" {
		what = append(what, "preflight passed")
	}
	fmt.Fprintf(w, "%s: ok", r.File)
	if len(what) > 0 {
		fmt.Fprintf(w, " (%s)", strings.Join(what, "; "))
	}
	fmt.Fprintln(w)
}

func parseInstalled(s string) (*validator.Installed, error) {
	ch, ver, ok := strings.Cut(s, ":")
	if !ok {
		return nil, fmt.Errorf("%q: want CHANNEL:VERSION, e.g. 291:1001", s)
	}
	c, err1 := strconv.ParseUint(ch, 10, 32)
	v, err2 := strconv.ParseUint(ver, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%q: want CHANNEL:VERSION with decimal numbers, e.g. 291:1001", s)
	}
	return &validator.Installed{Channel: uint32(c), ContentVersion: uint32(v)}, nil
}

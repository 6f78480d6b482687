// Command tuf-conformance-client implements the client-under-test CLI of the
// public TUF conformance suite (theupdateframework/tuf-conformance,
// CLIENT-CLI.md) on top of Ringfence's tuf package, the same code the daemon
// uses:
//
//	tuf-conformance-client --metadata-dir DIR init TRUSTED_ROOT
//	tuf-conformance-client --metadata-dir DIR --metadata-url URL refresh
//	tuf-conformance-client --metadata-dir DIR --metadata-url URL download \
//	    --target-name NAME [--target-name NAME...] --target-base-url URL --target-dir DIR
//
// Exit 0 on success, 1 on any failure. Metadata is stored under non-versioned
// names (root.json, timestamp.json, a delegated role's escaped name + .json)
// in the metadata directory, each role as soon as it verified. The target
// directory holds only verified files: a download in progress lives in
// <metadata-dir>/partial/<name>.part (no .json name, so it is never taken for
// metadata) and is renamed into the target directory once its length and
// hashes match.
//
// Time: the suite moves the clock with libfaketime, which Go programs do not
// see (they read the clock through the vDSO). Like the suite's own go-tuf
// client, this one reads the FAKETIME environment variable the suite sets
// and applies it: "@YYYY-MM-DD HH:MM:SS" is an absolute time, "+N"/"-N" with
// an optional unit s, m, h, d or y an offset from now.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/tuf"
)

func main() {
	if err := run(os.Args[1:], os.Getenv("FAKETIME"), time.Now); err != nil {
		fmt.Fprintln(os.Stderr, "tuf-conformance-client:", err)
		os.Exit(1)
	}
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func run(args []string, faketime string, now func() time.Time) error {
	fs := flag.NewFlagSet("tuf-conformance-client", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	metaDir := fs.String("metadata-dir", "", "")
	metaURL := fs.String("metadata-url", "", "")
	baseURL := fs.String("target-base-url", "", "")
	targetDir := fs.String("target-dir", "", "")
	maxRotations := fs.Int64("max-root-rotations", 0, "")
	daysInFuture := fs.Int("days-in-future", 0, "")
	var names stringList
	fs.Var(&names, "target-name", "")
	// Flags may come before and after the command.
	var rest []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return err
		}
		args = fs.Args()
		if len(args) > 0 {
			rest = append(rest, args[0])
			args = args[1:]
		}
	}
	if len(rest) == 0 || *metaDir == "" {
		return errors.New("usage: --metadata-dir DIR init ROOT | refresh | download")
	}
	clock, err := fakeClock(faketime, now)
	if err != nil {
		return err
	}
	if *daysInFuture != 0 {
		base := clock
		clock = func() time.Time { return base().AddDate(0, 0, *daysInFuture) }
	}
	switch rest[0] {
	case "init":
		if len(rest) != 2 {
			return errors.New("init needs the trusted root file")
		}
		b, err := os.ReadFile(rest[1])
		if err != nil {
			return err
		}
		if err := os.MkdirAll(*metaDir, 0o700); err != nil {
			return err
		}
		return atomicfile.WriteFile(filepath.Join(*metaDir, "root.json"), b, 0o600)
	case "refresh", "download":
	default:
		return fmt.Errorf("unknown command %q", rest[0])
	}
	if *metaURL == "" {
		return errors.New("--metadata-url is required")
	}
	root, err := os.ReadFile(filepath.Join(*metaDir, "root.json"))
	if err != nil {
		return fmt.Errorf("not initialized: %w", err)
	}
	opts := tuf.Options{Dir: *metaDir, TrustedRoot: root, MetadataURL: *metaURL, TargetsURL: *baseURL,
		DownloadDir: *targetDir, Clock: clock, MaxRootRotations: *maxRotations, Retries: -1}
	if opts.TargetsURL == "" {
		opts.TargetsURL = strings.TrimSuffix(*metaURL, "/") + "/../targets"
	}
	if rest[0] == "download" && opts.DownloadDir == "" {
		return errors.New("download needs --target-dir")
	}
	opts.PartialDir = filepath.Join(*metaDir, "partial")
	c, err := tuf.New(opts)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Refresh(ctx); err != nil {
		return err
	}
	if rest[0] == "refresh" {
		return nil
	}
	for _, n := range names {
		if _, err := c.Download(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// fakeClock applies a libfaketime FAKETIME setting to now.
func fakeClock(v string, now func() time.Time) (func() time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return now, nil
	}
	if strings.HasPrefix(v, "@") {
		t, err := time.Parse("2006-01-02 15:04:05", strings.TrimSpace(v[1:]))
		if err != nil {
			return nil, fmt.Errorf("FAKETIME %q: %w", v, err)
		}
		return func() time.Time { return t }, nil
	}
	if v[0] != '+' && v[0] != '-' {
		return nil, fmt.Errorf("FAKETIME %q: want @YYYY-MM-DD HH:MM:SS or +/-N[smhdy]", v)
	}
	unit := time.Second
	num := v
	switch v[len(v)-1] {
	case 's':
		num = v[:len(v)-1]
	case 'm':
		unit, num = time.Minute, v[:len(v)-1]
	case 'h':
		unit, num = time.Hour, v[:len(v)-1]
	case 'd':
		unit, num = 24*time.Hour, v[:len(v)-1]
	case 'y':
		unit, num = 365*24*time.Hour, v[:len(v)-1]
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return nil, fmt.Errorf("FAKETIME %q: %w", v, err)
	}
	off := time.Duration(n * float64(unit))
	return func() time.Time { return now().Add(off) }, nil
}

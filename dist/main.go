// Command dist builds the release packages ('make dist'; docs/packaging.md):
// for linux amd64 and arm64, a .deb and an .rpm of ringfenced (with the
// ringfence recovery CLI) and of ringfence-server, with the vendor's trusted
// root, server URL and capability manifest embedded in ringfenced
// (internal/vendorbuild), and SHA256SUMS. The build is reproducible: the same
// commit and inputs give byte-identical packages (-trimpath, no VCS stamp, a
// fixed SOURCE_DATE_EPOCH for every mtime, fixed modes and owners, files in
// sorted order), which TestReproducible checks.
//
// The packages are written by nfpm (github.com/goreleaser/nfpm/v2, the
// packager behind goreleaser) used as a library, not by hand-written
// ar/tar/cpio code: it is maintained and widely used for releases, and it
// gets the formats' details right (deb conffiles, md5sums and control
// fields; rpm headers, file digests and flags such as %config(noreplace);
// maintainer scripts for both), all of it with the fixed mtime given.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
)

const usage = `Usage: go run ./dist [flags]   (make dist VENDOR_ROOT=root.json SERVER_URL=https://...)

Builds, for each --arch, a .deb and an .rpm of ringfenced (with the ringfence
recovery CLI) and of ringfence-server into --out, and SHA256SUMS. ringfenced
embeds the vendor's trusted root (--vendor-root), the rollout server's URL
(--server-url: the repository and the telemetry endpoint) and optionally the
reference agent's capability manifest (--vendor-caps), so a package installs
and runs with no hand edits. Two runs with the same inputs give byte-identical
files.

Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dist", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	var o Options
	fs.StringVar(&o.Out, "out", "dist/out", "directory the packages and SHA256SUMS go to (earlier packages in it are removed)")
	fs.StringVar(&o.VendorRoot, "vendor-root", os.Getenv("VENDOR_ROOT"), "the fleet's trusted root.json (the repository's metadata/root.json, from 'ringfence-server repo init'); required")
	fs.StringVar(&o.ServerURL, "server-url", os.Getenv("SERVER_URL"), "the rollout server's base URL as hosts reach it: their repository and telemetry endpoint; required")
	fs.StringVar(&o.VendorCaps, "vendor-caps", os.Getenv("VENDOR_CAPS"), "the reference agent's capability manifest (default: the built-in reference sensor's)")
	channels := fs.String("channels", os.Getenv("CHANNELS"), "comma-separated content channels the packaged configuration follows (default: the manifest's channels, else 291)")
	fs.StringVar(&o.Version, "version", os.Getenv("VERSION"), "package version (default: from 'git describe --tags --always')")
	epoch := fs.String("source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "Unix time of every file's mtime and the build time (default: the last commit's, 'git log -1 --format=%ct')")
	arches := fs.String("arch", "amd64,arm64", "comma-separated GOARCH values to package")
	fs.StringVar(&o.Maintainer, "maintainer", "Ringfence <ringfence@example.com>", "the packages' maintainer")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dist: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	o.Arches = splitList(*arches)
	o.Log = stdout
	var err error
	if o.Channels, err = parseChannels(*channels); err != nil {
		fmt.Fprintln(stderr, "dist:", err)
		return 2
	}
	if o.Epoch, err = parseEpoch(*epoch); err != nil {
		fmt.Fprintln(stderr, "dist:", err)
		return 2
	}
	res, err := Build(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "dist:", err)
		return 1
	}
	res.Print(stdout)
	return 0
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}

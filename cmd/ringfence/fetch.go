package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/tuf"
)

const fetchHelp = `
Fetch refreshes the host's trusted TUF metadata from the repository at --url
(its metadata/ and targets/ below it), exactly as the daemon does, and
downloads each named target into <root>/downloads, verified for length and
SHA-256 against signed metadata before it gets its final name. The trusted
metadata persists under <root>/tuf, so versions never go backwards.

--trusted-root is the repository's root.json installed with the agent; it is
needed the first time only (later the persisted, possibly rotated, root is
used). Exit 0 fetched, 1 refused by TUF verification (the reason is one of
expired, rollback, bad signature, mismatch, not found, too large), 2 usage or
I/O error.

Example:
  ringfence fetch --root /var/lib/ringfence --url http://updates.example/ \
      --trusted-root root.json channels/291/1002.rfch`

func runFetch(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("fetch", "fetch --root DIR --url URL [--trusted-root FILE] TARGET...", fetchHelp, stdout, stderr)
	root := fs.String("root", hostconfig.DefaultRoot, "Ringfence root directory")
	url := fs.String("url", "", "repository base URL (metadata/ and targets/ below it)")
	trusted := fs.String("trusted-root", "", "root.json installed with the agent (first use)")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	names, code, ok := parseArgs(fs, args, stdout)
	if !ok {
		return code
	}
	if *url == "" {
		fmt.Fprintln(stderr, "ringfence fetch: --url is required")
		return exitUsage
	}
	var rootJSON []byte
	if *trusted != "" {
		b, err := boundedio.ReadFile(*trusted, tuf.MaxRootSize)
		if err != nil {
			fmt.Fprintf(stderr, "ringfence fetch: --trusted-root: %v\n", err)
			return exitUsage
		}
		rootJSON = b
	}
	c, err := tuf.New(tuf.Options{
		Dir: filepath.Join(*root, "tuf"), DownloadDir: filepath.Join(*root, "downloads"),
		TrustedRoot: rootJSON, MetadataURL: *url + "/metadata", TargetsURL: *url + "/targets",
	})
	if errors.Is(err, tuf.ErrNoTrustedRoot) {
		fmt.Fprintf(stderr, "ringfence fetch: this host trusts no repository yet (nothing in %s): pass --trusted-root FILE, the repository's metadata/root.json, the first time\n", filepath.Join(*root, "tuf"))
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "ringfence fetch: %v\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := c.Refresh(ctx); err != nil {
		hint := ""
		if *trusted != "" && errors.Is(err, tuf.ErrInvalid) {
			hint = fmt.Sprintf(" (is %s the repository's metadata/root.json?)", *trusted)
		}
		fmt.Fprintf(stderr, "ringfence fetch: %v%s\n", err, hint)
		return exitRejected
	}
	fmt.Fprintf(stdout, "metadata verified: %d content targets, %d rollout plans\n", len(c.Targets("content")), len(c.Targets("rollout")))
	for _, name := range names {
		path, err := c.Download(ctx, name)
		if err != nil {
			fmt.Fprintf(stderr, "ringfence fetch: %s: %v\n", name, err)
			return exitRejected
		}
		fmt.Fprintf(stdout, "%s -> %s (length and sha256 verified)\n", name, path)
	}
	return exitOK
}

// Command ringfence-server is the vendor's side of Ringfence: it creates and
// signs the TUF repository that hosts fetch content from, publishes channel
// files into it (after the same validation and preflight the hosts run),
// signs rollout plans, rotates keys, refreshes expiring metadata and
// verifies the repository the way a client would.
//
// Exit codes: 0 success, 1 content or repository rejected, 2 usage or I/O
// error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"time"

	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/internal/cli"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/tufrepo"
	"github.com/ringfence/ringfence/validator"
)

func commands() []cli.Command {
	return []cli.Command{
		{Name: "repo", Summary: "repository: 'repo init', 'repo refresh', 'repo verify'", Run: runRepo},
		{Name: "publish", Summary: "validate, preflight and publish a channel file as a signed content target", Run: runPublish},
		{Name: "publish-binary", Summary: "publish a ringfenced binary as target ringfenced/<os>-<arch>/<version> (hosts update themselves)", Run: runPublishBinary},
		{Name: "serve", Summary: "serve the repository, take telemetry, run the rollouts and their gate, show the dashboard", Run: runServe},
		{Name: "rollout", Summary: "rollouts: start|status|pause|resume|halt|rollback|promote|allow, or 'set' to sign a plan by hand", Run: runRollout},
		{Name: "hosts", Summary: "the fleet's admission: 'hosts list|show|accept|reject|decommission|tag'", Run: runHosts},
		{Name: "tokens", Summary: "enrolment tokens that admit hosts: 'tokens create|list|revoke'", Run: runTokens},
		{Name: "keys", Summary: "keys: 'keys rotate --role R' replaces a role's keys", Run: runKeys},
		{Name: "state", Summary: "the server's state: 'state backup' copies server.db consistently, 'state check' checks one", Run: runState},
		{Name: "sensor", Summary: "the reference sensor: 'sensor preflight' is publish's default preflight command", Run: runSensor},
	}
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	return cli.Table{
		Prog:      "ringfence-server",
		Title:     "the signed content repository and its rollouts",
		Usage:     "COMMAND [SUBCOMMAND] [flags] [args]",
		ExitCodes: "Exit codes: 0 success, 1 rejected, 2 usage or I/O error.",
		Commands:  commands(),
	}.Dispatch(args, stdout, stderr)
}

func newFlags(name, synopsis, help string, stdout, stderr io.Writer) *flag.FlagSet {
	return cli.NewFlags("ringfence-server", name, synopsis, help, stdout, stderr)
}

// sub dispatches "COMMAND SUB ...".
func sub(cmd string, args []string, subs []cli.Command, stdout, stderr io.Writer) int {
	return cli.Sub("ringfence-server "+cmd, args, subs, stdout, stderr)
}

func fail(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "ringfence-server %s: %v\n", cmd, err)
	return cli.ExitUsage
}

// repoFlags adds --repo and --keys.
func repoFlags(fs *flag.FlagSet) (repo, keys *string) {
	return fs.String("repo", "", "repository directory (metadata/ and targets/ inside; serve it as static files)"),
		fs.String("keys", "", "key directory (one PKCS#8 file per role key, mode 0600)")
}

func need(stderr io.Writer, cmd string, vals map[string]string) bool {
	for _, flagName := range slices.Sorted(maps.Keys(vals)) {
		if vals[flagName] == "" {
			fmt.Fprintf(stderr, "ringfence-server %s: --%s is required\n", cmd, flagName)
			return false
		}
	}
	return true
}

func runRepo(args []string, stdout, stderr io.Writer) int {
	return sub("repo", args, []cli.Command{
		{Name: "init", Summary: "create a repository and its keys", Run: repoInit},
		{Name: "refresh", Summary: "re-sign the timestamp and snapshot before they expire", Run: repoRefresh},
		{Name: "verify", Summary: "check the repository end to end, as a host would", Run: repoVerify},
		{Name: "export", Summary: "write the replicas' shared repository (in their database) into a directory, for a web server or CDN", Run: repoExport},
	}, stdout, stderr)
}

const repoInitHelp = `
Init creates a TUF repository: root, targets, snapshot and timestamp roles with
fresh keys, and two delegated targets roles: content (paths channels/*/*, the
channel files) and rollout (paths rollout/*, the rollout plans). Consistent
snapshots are on. Key files are written 0600 into --keys; move the root keys
somewhere offline afterwards: only 'keys rotate' needs them.

The repository's metadata/root.json is the trusted root to install with the
agent.`

func repoInit(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("repo init", "repo init --repo DIR --keys KEYDIR [--threshold N] [--key-type T]", repoInitHelp, stdout, stderr)
	repo, keys := repoFlags(fs)
	threshold := fs.Int("threshold", 1, "root keys, all needed to sign root")
	kt := fs.String("key-type", string(tufrepo.KeyEd25519), "ed25519 or ecdsa-p256")
	if _, code, ok := cli.ParseArgs(fs, args, stdout); !ok {
		return code
	}
	if !need(stderr, "repo init", map[string]string{"repo": *repo, "keys": *keys}) {
		return cli.ExitUsage
	}
	if *threshold < 1 {
		fmt.Fprintf(stderr, "ringfence-server repo init: --threshold %d: root needs at least 1 key\n", *threshold)
		return cli.ExitUsage
	}
	if _, err := tufrepo.Init(*repo, *keys, tufrepo.InitOptions{Threshold: *threshold, KeyType: tufrepo.KeyType(*kt)}); err != nil {
		return fail(stderr, "repo init", err)
	}
	fmt.Fprintf(stdout, "created repository %s (root threshold %d, %s keys in %s)\n", *repo, *threshold, *kt, *keys)
	fmt.Fprintf(stdout, "install %s with the agent as its trusted root\n", filepath.Join(*repo, "metadata", "root.json"))
	return cli.ExitOK
}

func repoRefresh(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("repo refresh", "repo refresh --repo DIR --keys KEYDIR", `
Refresh re-signs timestamp and snapshot with fresh expiry (timestamp 1 day,
snapshot 7 days), and any targets role within a quarter of its expiry. Run it
at least daily (cron, or 'serve' does it).`, stdout, stderr)
	repo, keys := repoFlags(fs)
	dbURL := repoDBFlag(fs)
	if _, code, ok := cli.ParseArgs(fs, args, stdout); !ok {
		return code
	}
	if !need(stderr, "repo refresh", map[string]string{"repo": *repo, "keys": *keys}) {
		return cli.ExitUsage
	}
	if err := updateRepo(*dbURL, *repo, *keys, func(r *tufrepo.Repo) error { return r.Refresh() }); err != nil {
		return fail(stderr, "repo refresh", err)
	}
	fmt.Fprintln(stdout, "timestamp and snapshot re-signed")
	return cli.ExitOK
}

func repoVerify(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("repo verify", "repo verify --repo DIR [--root FILE] [--json]", `
Verify checks the repository end to end like a client: it serves it on
loopback and runs go-tuf's updater from the first root (or --root) through
every root rotation, timestamp, snapshot, targets and both delegations, then
downloads every target and checks length and hashes. Exit 1 if anything
fails to verify.`, stdout, stderr)
	repo := fs.String("repo", "", "repository directory")
	rootFile := fs.String("root", "", "trusted root to start from (default: metadata/1.root.json)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if _, code, ok := cli.ParseArgs(fs, args, stdout); !ok {
		return code
	}
	if !need(stderr, "repo verify", map[string]string{"repo": *repo}) {
		return cli.ExitUsage
	}
	var root []byte
	if *rootFile != "" {
		b, err := boundedio.ReadFile(*rootFile, tufrepo.MaxMetadataSize)
		if err != nil {
			return fail(stderr, "repo verify", fmt.Errorf("--root: %w", err))
		}
		root = b
	}
	rep, err := tufrepo.Verify(context.Background(), *repo, root, time.Now())
	if errors.Is(err, tufrepo.ErrNoRepository) {
		return fail(stderr, "repo verify", err)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ringfence-server repo verify: %v\n", err)
		return cli.ExitRejected
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
		return cli.ExitOK
	}
	fmt.Fprintf(stdout, "ok: root v%d, timestamp v%d, snapshot v%d, %d targets verified; earliest expiry %s\n",
		rep.RootVersion, rep.TimestampVersion, rep.SnapshotVersion, len(rep.Targets), rep.Expires.UTC().Format(time.RFC3339))
	for _, t := range rep.Targets {
		fmt.Fprintf(stdout, "  %s\n", t)
	}
	return cli.ExitOK
}

const publishHelp = `
Publish runs the hosts' check (validation, then preflight) against every
sensor version the fleet runs, then adds the file as target
channels/<N>/<version>.rfch with its length and SHA-256, and re-signs
content, snapshot and timestamp.

The sensor versions are capability manifests: each --capabilities FILE
(repeatable) and every *.json in --matrix DIR; with neither, the built-in
sensor's. Publish says per version whether the file validates and passes
preflight. Refused by every version, nothing is published (exit 1).
Refused by some, it is published with a compatibility constraint signed
into its target metadata: the versions that accepted it. The rollout
server then keeps hosts of other sensors out of its rollouts, and those
hosts refuse it themselves (docs/repository.md).

--skip-static and --skip-preflight exist for the lab's replay of the 2024
failure (content that bypassed the validator); never use them for real.`

func runPublish(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("publish", "publish --repo DIR --keys KEYDIR --channel N [--capabilities FILE]... [--matrix DIR] FILE", publishHelp, stdout, stderr)
	repo, keys := repoFlags(fs)
	channel := fs.Uint("channel", 0, "channel number the file must carry")
	var manifests manifestList
	fs.Var(&manifests, "capabilities", "capability manifest of a sensor version the fleet runs; repeat for each (default: built-in sensor "+sensor.Version+")")
	matrix := fs.String("matrix", "", "directory of capability manifests (*.json), one per sensor version the vendor supports")
	skipStatic := fs.Bool("skip-static", false, "LAB ONLY: skip the static checks (models the 2024 validator bug)")
	skipPreflight := fs.Bool("skip-preflight", false, "LAB ONLY: skip the preflight run")
	dbURL := repoDBFlag(fs)
	files, code, ok := cli.ParseArgs(fs, args, stdout)
	if !ok {
		return code
	}
	if !need(stderr, "publish", map[string]string{"repo": *repo, "keys": *keys}) {
		return cli.ExitUsage
	}
	if len(files) != 1 || *channel == 0 {
		fmt.Fprintln(stderr, "ringfence-server publish: give --channel N and exactly one channel file")
		return cli.ExitUsage
	}
	path := files[0]
	paths, err := matrixPaths(manifests, *matrix)
	if err != nil {
		fmt.Fprintf(stderr, "ringfence-server publish: %v\n", err)
		return cli.ExitUsage
	}
	data, err := validator.ReadFile(path)
	if err != nil {
		return fail(stderr, "publish", err)
	}
	f, err := validator.Parse(data)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return cli.ExitRejected
	}
	if f.Channel != uint32(*channel) {
		fmt.Fprintf(stderr, "ringfence-server publish: %s is channel %d, not %d\n", path, f.Channel, *channel)
		return cli.ExitRejected
	}
	// The hosts' check, against each sensor version of the fleet.
	opts := validator.VetOptions{SkipStatic: *skipStatic}
	self := ""
	if !*skipPreflight {
		if self, err = os.Executable(); err != nil {
			return fail(stderr, "publish", err)
		}
		opts.Preflight = &validator.PreflightOptions{}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	checks, err := vetMatrix(ctx, data, paths, self, opts)
	stop()
	if err != nil {
		return fail(stderr, "publish", err)
	}
	c := constraint(checks)
	if len(checks) == 1 && !checks[0].verdict.Accepted() {
		v := checks[0].verdict // one version: the report of before the matrix
		v.Print(stderr, path)
		fmt.Fprintf(stderr, "ringfence-server publish: %s; nothing was published\n", v.Refusal(path))
		return cli.ExitRejected
	}
	printMatrix(stdout, stderr, path, checks)
	if len(c.Excluded) == len(checks) {
		fmt.Fprintf(stderr, "ringfence-server publish: %s is refused by every sensor version checked; nothing was published\n", path)
		return cli.ExitRejected
	}
	var name string
	if uerr := updateRepo(*dbURL, *repo, *keys, func(r *tufrepo.Repo) error {
		name, err = r.PublishFor(f.Channel, f.ContentVersion, data, c)
		return nil
	}); uerr != nil {
		return fail(stderr, "publish", uerr)
	}
	if errors.Is(err, tufrepo.ErrExists) || errors.Is(err, tufrepo.ErrOtherConstraint) {
		fmt.Fprintf(stderr, "ringfence-server publish: %v\n", err)
		return cli.ExitRejected
	}
	if err != nil {
		return fail(stderr, "publish", err)
	}
	if c.Any() {
		fmt.Fprintf(stdout, "published %s (%d bytes) for any sensor; content, snapshot and timestamp re-signed\n", name, len(data))
	} else {
		fmt.Fprintf(stdout, "published %s (%d bytes) for %v: hosts of other sensors never get it; content, snapshot and timestamp re-signed\n", name, len(data), c)
	}
	return cli.ExitOK
}

func runRollout(args []string, stdout, stderr io.Writer) int {
	return sub("rollout", args, rolloutCommands(), stdout, stderr)
}

func rolloutSet(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("rollout set", "rollout set --repo DIR --keys KEYDIR --channel N --plan FILE", `
Set signs a rollout plan as target rollout/<N>.json with the rollout role (and
re-signs snapshot and timestamp). A plan names content versions, never bytes:
every version it names must be published. Format:

  {"format": "ringfence-rollout/v1", "channel": 291,
   "stages": [{"name": "canary", "percent": 0, "hosts": ["host-1"], "version": 1002},
              {"name": "1%", "percent": 1, "version": 1002}, ...],
   "deny": [1003]}`, stdout, stderr)
	repo, keys := repoFlags(fs)
	channel := fs.Uint("channel", 0, "channel number")
	planPath := fs.String("plan", "", "the plan (JSON)")
	if _, code, ok := cli.ParseArgs(fs, args, stdout); !ok {
		return code
	}
	if !need(stderr, "rollout set", map[string]string{"repo": *repo, "keys": *keys, "plan": *planPath}) {
		return cli.ExitUsage
	}
	if *channel == 0 {
		fmt.Fprintln(stderr, "ringfence-server rollout set: --channel is required")
		return cli.ExitUsage
	}
	plan, err := boundedio.ReadFile(*planPath, rollout.MaxSize)
	if err != nil {
		return fail(stderr, "rollout set", fmt.Errorf("--plan: %w", err))
	}
	if uerr := tufrepo.Update(*repo, *keys, nil, func(r *tufrepo.Repo) error {
		err = r.SetRollout(uint32(*channel), plan)
		return nil
	}); uerr != nil {
		return fail(stderr, "rollout set", uerr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ringfence-server rollout set: %v\n", err)
		return cli.ExitRejected
	}
	fmt.Fprintf(stdout, "signed %s with the rollout role\n", rollout.RolloutTarget(uint32(*channel)))
	return cli.ExitOK
}

// maxAgentBinary bounds a ringfenced binary read for publishing.
const maxAgentBinary = 512 << 20

func runPublishBinary(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("publish-binary", "publish-binary --repo DIR --keys KEYDIR --os OS --arch ARCH --version V FILE", `
Publish-binary adds a ringfenced binary as target ringfenced/<os>-<arch>/<version>,
signed by the top-level targets role (and re-signs snapshot and timestamp).
Hosts on that platform running an older version download it through TUF,
put it in place with the verified SHA-256, and restart into it; a binary that
fails its first start is rolled back on the host and never applied there again.`, stdout, stderr)
	repo, keys := repoFlags(fs)
	goos := fs.String("os", "", "target OS (linux, windows)")
	goarch := fs.String("arch", "", "target architecture (amd64, arm64)")
	ver := fs.String("version", "", "the binary's version (dotted numbers, as it reports with 'ringfenced version')")
	dbURL := repoDBFlag(fs)
	pos, code, ok := cli.ParseArgs(fs, args, stdout)
	if !ok {
		return code
	}
	if !need(stderr, "publish-binary", map[string]string{"repo": *repo, "keys": *keys, "os": *goos, "arch": *goarch, "version": *ver}) {
		return cli.ExitUsage
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "ringfence-server publish-binary: give exactly one binary")
		return cli.ExitUsage
	}
	data, err := boundedio.ReadFile(pos[0], maxAgentBinary)
	if err != nil {
		return fail(stderr, "publish-binary", err)
	}
	var name string
	if uerr := updateRepo(*dbURL, *repo, *keys, func(r *tufrepo.Repo) error {
		name, err = r.PublishBinary(*goos, *goarch, *ver, data)
		return nil
	}); uerr != nil {
		return fail(stderr, "publish-binary", uerr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ringfence-server publish-binary: %v\n", err)
		return cli.ExitRejected
	}
	fmt.Fprintf(stdout, "published %s (%d bytes) with the targets role\n", name, len(data))
	return cli.ExitOK
}

func runKeys(args []string, stdout, stderr io.Writer) int {
	return sub("keys", args, []cli.Command{
		{Name: "rotate", Summary: "replace a role's keys and re-sign what trusts them", Run: keysRotate},
	}, stdout, stderr)
}

func keysRotate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("keys rotate", "keys rotate --repo DIR --keys KEYDIR --role R [--key-type T]", `
Rotate replaces every key of a role (root, targets, snapshot, timestamp,
content, rollout) with fresh ones and re-signs what trusts them: a new root
version for the top-level roles (signed by the old and new root keys, so
hosts follow the chain), the targets delegation for content and rollout. The
retired key files are removed once nothing trusts them.`, stdout, stderr)
	repo, keys := repoFlags(fs)
	role := fs.String("role", "", "role whose keys to rotate")
	kt := fs.String("key-type", string(tufrepo.KeyEd25519), "ed25519 or ecdsa-p256")
	if _, code, ok := cli.ParseArgs(fs, args, stdout); !ok {
		return code
	}
	if !need(stderr, "keys rotate", map[string]string{"repo": *repo, "keys": *keys, "role": *role}) {
		return cli.ExitUsage
	}
	if err := tufrepo.Update(*repo, *keys, nil, func(r *tufrepo.Repo) error { return r.RotateKeys(*role, tufrepo.KeyType(*kt)) }); err != nil {
		return fail(stderr, "keys rotate", err)
	}
	fmt.Fprintf(stdout, "rotated the %s keys\n", *role)
	return cli.ExitOK
}

func runSensor(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "preflight" {
		return sensor.PreflightMain(args[1:], stdout, stderr)
	}
	fmt.Fprintln(stderr, "ringfence-server sensor: want 'preflight'")
	return cli.ExitUsage
}

// Command ringfence-lab runs a real fleet on one machine and replays July
// 2024 against it: one ringfence-server serve and N ringfenced processes on
// loopback (each with its own root, host key and reference sensor, each
// following two content channels), driven
// through the real binaries and the server's API. It prints a timeline and a
// table of what each scenario did to the fleet, and exits non-zero if any
// host ends without good content. `make demo` runs it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/internal/cli"
)

const help = `
ringfence-lab starts a real ringfence-server and a fleet of real ringfenced
daemons on loopback and replays six scenarios against them, printing one
line per step and a table at the end. Nothing is simulated: the hosts poll
the server's TUF repository, validate and preflight content themselves,
install it into A/B slots, run the reference sensor on it, and report signed
telemetry; the server moves each rollout ring by ring and halts it by itself.

The fleet. Every host's installed capability manifest says sensor 7.12 (21
IPC inputs): that is what its validator and preflight check content against.
Half the hosts run a 7.12 agent. The other half (legacy_percent, 50% by
default, legacy_canaries of them canaries: 2) runs a 7.11 agent build (20 IPC
inputs) whose manifest was never updated: a packaging bug, the kind of
mismatch behind Channel File 291. Every host preflights content with the
reference preflight against its manifest, except agent_preflight_canaries (1)
of the legacy canaries, whose agent.preflight_command runs their installed
agent ('ringfenced agent --capabilities sensor-7.11.json --preflight'). The
first --canaries hosts report the tag "canary". Every rollout is: the canary
group, then 20% of hosts, then 60%, then 100%, with short bakes. Every
host follows two channels, 291 and 292 (channels in lab.toml), with one
daemon and one identity: each channel has its own boot record and A/B
slots, and a host runs one trial at a time (a channel's new version is
staged and waits while another channel's trial runs).

The scenarios (1-4 and 6 on channel 291; 292 has no content until 5):
  1  good content: good-ipc-1001 from no content, then good-ipc-1002; each
     passes canary -> 20% -> 60% -> 100% and every host ends on it, GOOD.
  2  cf291-shape (template IPC with 21 fields, matchers on field 21) is
     checked by 'ringfence-server publish --capabilities sensor-7.11.json':
     the publisher refuses it; its message is shown.
  3  cf291-field22 (version 1005: matchers on field 22, which no sensor
     supplies) was published with --skip-static --skip-preflight, as the 2024
     pipeline did. Rolled out, every canary that fetches it refuses it in its
     own checks; the server halts and rolls back; nothing is activated.
  4  cf291-shape published after checks against sensor 7.12 (what every
     manifest says): it passes the publisher and every host's validator, and
     every reference preflight. The legacy canary with the reference
     preflight (h01) loads it, its 7.11 agent crashes, and its boot guard
     puts last-known-good back; the one with preflight by its installed
     agent (h02) refuses it in preflight (PREFLIGHT_CRASH) and never stages
     it. The server halts on the first of the two reports (the canary rule);
     the rollout is started with manual_rollback, so the halt freezes the
     plan on the canary group, and the lab rolls back once both have shown
     what they do. No host outside the canary group ever loads it.
  5  two channels at once: the server starts two rollouts at the same
     moment on the same hosts, cf291-shape again on channel 291 (re-encoded
     as version 1006) and channel 292's first content (good-ipc-1001
     re-encoded as version 2001). 291's halts in its canary stage on the
     first legacy canary's report and the server rolls it back at once (the
     other legacy canary may not fetch it at all); 292's completes, its canaries taking 2001 once 291's
     trial ended. Every host ends on 291's last good version and on 2001,
     both GOOD; a row per channel.
  6  costly on 7.11 agents: costly-glob (version 1007: good-ipc-1002 plus
     three log-only instances with patterns like "*a*?*?!" on the command
     line) passes every check, the 7.11 agent's own preflight included, and
     crashes nothing; but the 7.11 build's glob backtracks over long
     command lines, and the legacy agents burn several times their usual
     CPU on it. No host crashes, reverts or refuses it, and a host whose
     health window ends before the halt marks it GOOD. The server's health
     test, which judges each treated host's health sample once against
     limits the controls' samples set, finds the legacy hosts unhealthy
     and halts the rollout (in the 20% or the 60% stage, or in the first
     seconds of the 100% stage, while its hosts still run 1002 and count
     as controls), and the gate rolls it back: every host ends on 1002.
     The timeline prints the health test's counts at the halt, the table
     how many treated hosts it judged and found unhealthy.

Content is published before the server starts, so that the timeline is
about the rollouts (a publish while serving works too: both write under the
repository's lock). The table counts, per scenario and channel, the hosts
that loaded the version (staged, activated, handed to the agent's loader),
waited (had it staged while another channel's trial ran, as seen between
their polls), crashed, were reverted by the boot guard, rejected it, left it
on the signed rollback (recalled), and ended healthy (on the good version,
GOOD, agent running); "unhealthy" is how many of the treated hosts the
server's health test judged it found unhealthy ("-": it judged none);
"halt" is from the rollout's start decision to its halt decision, on the
server's clock.

Output: the timeline on stdout (stderr with --json), then the table, or the
report as JSON on stdout with --json. The daemons' and the server's logs go to
the work directory: server.log, publisher.log, hosts/hNN/daemon.log (each
host's ringfenced.toml and root beside it), hosts.txt (names, host ids,
roles), content/ (scenario 5's re-encoded files). The logs are for people:
the lab learns what each host did from its daemon's journal and status file
(root/daemon/events.jsonl, status.json), what it runs on each channel from
that channel's boot record (root/channels/N/bootrecord), and the rollouts
from the server's API. Settings come from the built-in lab.toml (--config
replaces it).

Replicas. With --db postgres://USER@HOST/DATABASE the server is
--replicas N (default 1, at most 5) 'ringfence-server serve --db' replicas
on that PostgreSQL database (docs/scale.md): one leads by a lease in the
database (--lease-ttl 3s here), the others queue telemetry in it and pass
the API to the leader. Each has its own state directory (state, state-2,
...) with the same operator token, and its own repository directory: the
first the lab's repository, with which it seeds the database, the others
empty ones (they pull it). Logs: server-1.log, server-2.log, ... With more
than one, haproxy runs in front of them (haproxy.log; 'make deps' installs
it), and the hosts' repository and telemetry endpoint and the lab's API
client are its URL. The database must be new and empty: the lab does not
create it (createdb DATABASE), and refuses one that already holds a
repository. --replicas without --db is a usage error.

Every process the lab starts is stopped before it exits (SIGINT, then SIGKILL
after 15 s), on errors and on Ctrl-C too; on Linux a child also gets SIGTERM
if the lab itself is killed. With --keep the server and the fleet stay up at
the end, the dashboard URL (with the operator token) is printed, and the lab
waits for Ctrl-C; the work directory is kept.

Exit codes: 0 every scenario did what it should and every host ends on good
content on both channels; 1 otherwise (the hosts are named), or
interrupted; 2 usage.`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := cli.NewFlags("ringfence-lab", "", "[--hosts N] [--canaries N] [--work DIR] [--keep] [--bin DIR] [--json] [--db postgres://... [--replicas N]]", help, stdout, stderr)
	hosts := fs.Int("hosts", 0, "hosts in the fleet (default 50, from lab.toml; at most 200)")
	canaries := fs.Int("canaries", 0, "hosts tagged canary, the first stage of every rollout (default 5, from lab.toml)")
	work := fs.String("work", "", "work directory, new or empty (default: a temporary directory, removed at the end unless --keep or the lab failed)")
	keep := fs.Bool("keep", false, "at the end, keep the server and the fleet running and print the dashboard URL; wait for Ctrl-C; keep the work directory")
	bin := fs.String("bin", "", "directory holding ringfence, ringfenced and ringfence-server (default: this program's directory)")
	testdata := fs.String("testdata", "", "the repository's testdata directory (default: BIN/../testdata, else ./testdata)")
	configPath := fs.String("config", "", "lab settings in TOML, replacing the built-in lab.toml (see it for the keys)")
	asJSON := fs.Bool("json", false, "print the report as JSON on stdout (the timeline goes to stderr)")
	dbURL := fs.String("db", "", "run the server as replicas on this PostgreSQL database (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE), which must be new and empty; the lab does not create it")
	replicas := fs.Int("replicas", 0, fmt.Sprintf("with --db: how many replicas (default 1, at most %d); more than one run behind haproxy", MaxReplicas))
	rest, code, ok := cli.ParseArgs(fs, args, stdout)
	if !ok {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "ringfence-lab: unexpected argument %q; see 'ringfence-lab --help'\n", rest[0])
		return cli.ExitUsage
	}
	if err := checkReplicas(*dbURL, *replicas); err != nil {
		fmt.Fprintln(stderr, "ringfence-lab:", err)
		return cli.ExitUsage
	}
	cfg := DefaultConfig()
	if *configPath != "" {
		b, err := boundedio.ReadFile(*configPath, maxConfigSize)
		if err != nil {
			fmt.Fprintln(stderr, "ringfence-lab:", err)
			return cli.ExitUsage
		}
		if cfg, err = ParseConfig(b); err != nil {
			fmt.Fprintf(stderr, "ringfence-lab: %s: %v\n", *configPath, err)
			return cli.ExitUsage
		}
	}
	if *hosts != 0 {
		cfg.Hosts = *hosts
	}
	if *canaries != 0 {
		cfg.Canaries = *canaries
	}
	if err := cfg.Check(); err != nil {
		fmt.Fprintln(stderr, "ringfence-lab:", err)
		return cli.ExitUsage
	}
	if *bin == "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintln(stderr, "ringfence-lab: give --bin DIR:", err)
			return cli.ExitUsage
		}
		*bin = filepath.Dir(exe)
	}
	if *testdata == "" {
		*testdata = findTestdata(*bin)
	}
	temp := *work == ""
	if temp {
		d, err := os.MkdirTemp("", "ringfence-lab-")
		if err != nil {
			fmt.Fprintln(stderr, "ringfence-lab:", err)
			return cli.ExitUsage
		}
		*work = d
	}
	for _, p := range []*string{bin, testdata, work} {
		if a, err := filepath.Abs(*p); err == nil {
			*p = a
		}
	}

	out := stdout
	if *asJSON {
		out = stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	report := func(rep Report) int {
		if *asJSON {
			if err := rep.WriteJSON(stdout); err != nil {
				return cli.ExitUsage
			}
		} else {
			rep.WriteText(stdout)
		}
		if !rep.OK {
			fmt.Fprintf(stderr, "ringfence-lab: the lab failed; work directory kept: %s\n", *work)
			return cli.ExitRejected
		}
		return cli.ExitOK
	}
	kept := -1 // the exit code, once the report was printed before waiting
	rep, err := Run(ctx, Options{Config: cfg, Bin: *bin, Testdata: *testdata, Work: *work, Keep: *keep, Out: out, DB: *dbURL, Replicas: *replicas,
		Kept: func(rep Report) {
			kept = report(rep)
			fmt.Fprintf(out, "\ndashboard: %s\nthe server and the fleet keep running (work directory %s); Ctrl-C stops them\n", rep.Dashboard, *work)
		}})
	if kept >= 0 && err == nil {
		fmt.Fprintf(out, "stopped; work directory kept: %s\n", *work)
		return kept
	}
	interrupted := ctx.Err() != nil
	if !*keep && temp && err == nil && !interrupted && rep.OK {
		if rerr := os.RemoveAll(*work); rerr != nil {
			fmt.Fprintln(stderr, "ringfence-lab: remove the work directory:", rerr)
		}
	} else {
		rep.Work = *work
	}
	switch {
	case interrupted:
		fmt.Fprintf(stderr, "ringfence-lab: interrupted; every process stopped; work directory kept: %s\n", *work)
		return cli.ExitRejected
	case err != nil:
		fmt.Fprintf(stderr, "ringfence-lab: %v\nevery process stopped; work directory kept: %s\n", err, *work)
		return cli.ExitRejected
	}
	return report(rep)
}

// checkReplicas checks --db and --replicas: --db empty or a PostgreSQL
// URL, --replicas only with it, 1 to MaxReplicas (0: the default). The
// error never quotes the URL (it may hold a password).
func checkReplicas(db string, n int) error {
	if db == "" {
		if n != 0 {
			return errors.New("--replicas runs the server as replicas on a PostgreSQL database: give --db postgres://... too")
		}
		return nil
	}
	scheme, _, ok := strings.Cut(db, "://")
	if !ok || !strings.EqualFold(scheme, "postgres") && !strings.EqualFold(scheme, "postgresql") {
		return errors.New("--db takes a postgres:// or postgresql:// URL of a new, empty database")
	}
	if n < 0 || n > MaxReplicas {
		return fmt.Errorf("--replicas %d: want 1 to %d", n, MaxReplicas)
	}
	return nil
}

// findTestdata looks for the repository's testdata beside the binaries'
// directory (bin/../testdata), then in the current directory.
func findTestdata(bin string) string {
	for _, d := range []string{filepath.Join(bin, "..", "testdata"), "testdata"} {
		if _, err := os.Stat(filepath.Join(d, "channels")); err == nil {
			return d
		}
	}
	return filepath.Join(bin, "..", "testdata")
}

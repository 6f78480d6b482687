package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/cli"
	"github.com/ringfence/ringfence/loader"
	"github.com/ringfence/ringfence/sensor"
)

const agentHelp = `The reference sensor as the daemon supervises it: the agent a vendor replaces
with their own (agent.command in the configuration). It loads the content of
every channel of the root, in ascending order, each strictly through the loader
contract (bootguard.Select on the channel's boot record via the installer, the
content read exactly as verified, its first events, then LOADED), prints
"ready" on stdout, then evaluates a stream of events with every loaded channel
and prints "alive" now and then and a "health" line every --health-interval
(the events it evaluated since "ready", and a histogram of how long each
took: what the daemon reports as the agent's health), until SIGINT or SIGTERM. Then it stops
evaluating, records the clean stop on each channel whose trial it loaded
(breadcrumb STOPPED: the next start loads that trial without spending one of
its tries) and exits 0. A crash on content kills it, as a kernel agent's crash
kills its host: the breadcrumb it leaves on that channel makes the next start
fall back on that channel alone (LOADING: a crash while loading), or spend
one of the trial's tries (LOADED: a crash after the load).

With --preflight it loads no root: it runs FILE in its own interpreter, with
the capabilities it would load content with, through the reference preflight
harness (the one 'ringfenced sensor preflight' runs: synthesized events, then
random ones), prints its report and exits 0, or describes the failure on
stderr and exits 1 (refused on load), 3 (crashed) or 2 (usage). Pointing
agent.preflight_command at the agent's own command line plus --preflight
preflights content with the interpreter that will load it, whatever the
installed capability manifest claims.`

func agentMain(args []string, stdout, stderr io.Writer) int {
	fs := cli.NewFlags("ringfenced", "agent", "agent [--root DIR] [--capabilities FILE] | agent --preflight [--capabilities FILE] FILE", agentHelp, stdout, stderr)
	root := fs.String("root", os.Getenv(daemon.EnvRoot), "Ringfence root directory (default: $"+daemon.EnvRoot+")")
	capsPath := fs.String("capabilities", "", "capability manifest of this interpreter (default: the one a vendor build embeds, else the built-in sensor "+sensor.Version+"'s)")
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()), "seed of the event stream (with --preflight: of its random events, default 1)")
	rate := fs.Int("events-per-second", 200, "events evaluated per second after the load")
	alive := fs.Duration("alive-interval", 5*time.Second, "how often to print \"alive\"")
	healthEvery := fs.Duration("health-interval", time.Second, "how often to print the \"health\" line (its events and their latency since \"ready\")")
	preflight := fs.Bool("preflight", false, "run the channel file FILE in this agent's interpreter instead, as a preflight command (validator.Preflight) does")
	pos, code, ok := cli.ParseArgs(fs, args, stdout)
	if !ok {
		return code
	}
	// One manifest for both modes: what the agent loads content with is
	// what its preflight runs content with.
	caps, err := loadCapabilities(*capsPath)
	if err != nil {
		fmt.Fprintln(stderr, "ringfenced agent:", err)
		return cli.ExitUsage
	}
	if *preflight {
		if len(pos) != 1 {
			fmt.Fprintln(stderr, "usage: ringfenced agent --preflight [--capabilities FILE] [--seed N] FILE")
			return cli.ExitUsage
		}
		s := uint64(sensor.DefaultPreflightSeed)
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "seed" {
				s = *seed
			}
		})
		return sensor.PreflightFile(pos[0], caps, s, sensor.DefaultRandomEvents, stdout, stderr)
	}
	if *root == "" {
		fmt.Fprintln(stderr, "ringfenced agent: no root: pass --root or set", daemon.EnvRoot)
		return cli.ExitUsage
	}
	// SIGINT and SIGTERM are caught from here on, not only once "ready" is
	// out: a stop that comes during the load lets the load finish (a crash
	// in it still ends the process, the breadcrumb LOADING), and is then a
	// clean stop like any other. Without this, a stop just after "ready"
	// ended the process by the signal, and the stop was not recorded.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	in, err := installer.Open(*root, installer.Options{Capabilities: caps})
	if err != nil {
		fmt.Fprintln(stderr, "ringfenced agent:", err)
		return cli.ExitRejected
	}
	loaded, err := loader.LoadAll(in, loader.Options{Capabilities: caps, Seed: *seed})
	if err != nil {
		in.Close()
		fmt.Fprintln(stderr, "ringfenced agent:", err)
		return cli.ExitRejected
	}
	var progs []*sensor.Program
	var words []string
	for _, l := range loaded {
		d := l.Boot.Decision
		if l.Program != nil {
			progs = append(progs, l.Program)
			words = append(words, fmt.Sprintf("channel=%d version=%d slot=%v why=%s", d.Entry.Channel, d.Entry.Version, d.Slot, d.Why))
		} else {
			words = append(words, fmt.Sprintf("channel=%d no-content why=%s", l.Channel, d.Why))
		}
	}
	in.Close() // the daemon takes the root back after "ready"
	if len(words) == 0 {
		words = append(words, "no-content why=no-channel")
	}
	fmt.Fprintf(stdout, "%s %s\n", daemon.LineReady, strings.Join(words, "; "))

	nexts := make([]func() sensor.Event, len(progs))
	for i, p := range progs {
		nexts[i] = sensor.RandomEvents(p.File(), *seed+1+uint64(i))
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastAlive, lastHealth := time.Now(), time.Now()
	// The sensor's own measure of its work: each evaluation, timed on the
	// monotonic clock (the generator's cost left out).
	var meter sensor.Meter
	for {
		select {
		case <-ctx.Done():
			// A clean stop: the content is evaluated only in this loop,
			// which no longer runs it. Only now is the stop recorded, so
			// that a crash while the content runs is never taken for one.
			if err := loader.Stopped(loaded); err != nil {
				fmt.Fprintln(stderr, "ringfenced agent:", err, "(the next start spends a try of that trial)")
			}
			return cli.ExitOK
		case now := <-tick.C:
			for i, p := range progs {
				for range max(*rate/10, 1) {
					ev := nexts[i]()
					start := time.Now()
					p.Eval(ev)
					meter.Observe(time.Since(start))
				}
			}
			if now.Sub(lastAlive) >= *alive {
				lastAlive = now
				fmt.Fprintf(stdout, "%s events=%d\n", daemon.LineAlive, meter.Events)
			}
			if now.Sub(lastHealth) >= *healthEvery {
				lastHealth = now
				fmt.Fprintln(stdout, daemon.HealthLine(meter))
			}
		}
	}
}

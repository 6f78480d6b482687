// Command ringfence-sim simulates a content update reaching a large fleet
// under three rollout policies (all at once, time-based waves, and
// Ringfence's real controller and gate) in four scenarios, and reports
// what each exposed: hosts that loaded the bad version, hosts that crashed,
// hosts still down at the end with and without the host-side boot guard,
// when the rollout halted, and for a healthy update when it reached 99% of
// the fleet. With --reps it repeats the ringfence runs over seeds and
// reports the false-halt and detection rates. With --channels it measures
// what one trial at a time per host costs when several channels roll out at
// once. The model is package fleetsim's.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ringfence/ringfence/fleetsim"
	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/cli"
)

const help = `
Ringfence-sim runs every scenario under every policy on a modelled fleet and
prints a table (--json for JSON, --svg FILE for a chart of exposed hosts over
time). Each pair runs twice: with the host-side boot guard (the numbers in
the table) and without it (the "down, no guard" column: hosts crash-looping
at the end, each needing hands). The ringfence policy is the real rollout
controller and gate, on the default plan (canary group with its first wave,
0.1%, 0.8%, 8%, 50%, 100%; --emergency bakes a sixth as long).

Scenarios: crash-all (content crashes every host on load: 2024), crash-1pct
(it crashes 1% of hosts on load), background-10x and background-3x (hosts
on it crash ten and three times as often), cpu-2x (the agent burns twice
its CPU; nothing crashes), silent-sensor (the agent runs and reports but
processes no events), memory-leak (the agent grows by its usual size every
hour), healthy. Policies: all-at-once, waves (Bottlerocket's
schedule: 1h 1%, 4h 5%, 1d 15%, 2d 40%, 4d 60%, 5d 90%, 6d 100%; no health
gate), ringfence.

--reps R repeats the ringfence runs with R seeds: for each scenario, the
runs halted, halted before 1% and before 10% of the fleet had the version,
the hosts exposed (median, 99th percentile, most), and for healthy content
when it reached 99% of the fleet (median, 95th percentile, slowest).

--channels 1,2,3,5 prints another table instead: for each K, K channels
that the same hosts follow, each a healthy update under its own ringfence
rollout, all started at once; when every channel had reached 99% of the
fleet (and the mean over the channels), with one trial at a time per host
(a version that arrives during another channel's trial waits for it to end
and starts at the host's next check-in) and with overlapping trials, each
as a ratio to one channel. Channels run on fixed bakes (no promotion by the
evidence, no waiting for it), so that what one trial at a time costs is
not lost in each channel's own draws of failures. It runs at 1,000,000
hosts unless --hosts says otherwise.`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// row is one scenario and policy.
type row struct {
	*fleetsim.Result
	DownNoGuard int `json:"down_no_guard"`
}

// rates are the repeated ringfence runs of one scenario.
type rates struct {
	Scenario fleetsim.Scenario `json:"scenario"`
	Runs     int               `json:"runs"`
	Halted   int               `json:"halted"`
	// MaxLoaded is the most hosts any run exposed.
	MaxLoaded int `json:"max_loaded"`
	// MedianHaltAfterReport over the halted runs.
	MedianHaltAfterReport time.Duration `json:"median_halt_after_report"`
	// Below1 and Below10: runs that halted before 1% (10%) of the fleet
	// had loaded the version.
	Below1  int `json:"below_1pct"`
	Below10 int `json:"below_10pct"`
	// Loaded50 and Loaded99 are the median and 99th percentile of the
	// hosts a run exposed.
	Loaded50 int `json:"loaded_p50"`
	Loaded99 int `json:"loaded_p99"`
	// Reach99 are the median, 95th percentile and slowest of when the
	// runs that reached 99% of the fleet did (healthy content); -1: none did.
	Reach99 [3]time.Duration `json:"reach_99"`
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := cli.NewFlags("ringfence-sim", "ringfence-sim", "[flags]", help, stdout, stderr)
	d := fleetsim.Defaults()
	hosts := fs.Int("hosts", d.Hosts, "hosts in the fleet")
	duration := fs.Duration("duration", d.Duration, "simulated time")
	scenarios := fs.String("scenarios", join(fleetsim.Scenarios), "scenarios to run, comma-separated: "+join(fleetsim.Scenarios))
	policies := fs.String("policies", join(fleetsim.Policies), "policies to run, comma-separated: "+join(fleetsim.Policies))
	seed := fs.Uint64("seed", 1, "seed of the fleet and its events")
	reps := fs.Int("reps", 0, "repeat the ringfence runs with this many seeds and report false-halt and detection rates")
	emergency := fs.Bool("emergency", false, "the ringfence policy uses the emergency schedule")
	canaries := fs.Int("canaries", d.Canaries, "hosts in the canary group")
	checkIn := fs.Duration("check-in", d.CheckIn, "hosts' check-in interval")
	offline := fs.Float64("offline", d.Offline, "fraction of hosts offline at any time")
	background := fs.Float64("background-rate", d.BackgroundRate, "sensor crashes per host-hour on any version")
	asJSON := fs.Bool("json", false, "print JSON instead of the table")
	svg := fs.String("svg", "", "write a chart of exposed hosts over time (SVG) to this file")
	repsHosts := fs.Int("reps-hosts", 0, "hosts in the fleet of the --reps runs (default: --hosts)")
	goals := fs.Bool("goals", false, "also run healthy content on the emergency schedule and print each goal of docs/fleetsim.md with what was measured (make sim)")
	channels := fs.String("channels", "", "instead of the scenarios, measure one trial at a time per host: K channels rolled out at once, for each K in this comma-separated list (e.g. 1,2,3,5)")
	if _, code, ok := cli.ParseArgs(fs, args, stdout); !ok {
		return code
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["channels"] {
		base := d
		base.Hosts = channelHosts
		if set["hosts"] {
			base.Hosts = *hosts
		}
		base.Duration, base.Seed, base.Emergency, base.Canaries = *duration, *seed, *emergency, *canaries
		base.CheckIn, base.Offline, base.BackgroundRate = *checkIn, *offline, *background
		for _, name := range []string{"scenarios", "policies", "reps", "reps-hosts", "goals", "svg"} {
			if set[name] {
				fmt.Fprintf(stderr, "ringfence-sim: --%s does not go with --channels (every channel is a healthy update under the ringfence policy)\n", name)
				return cli.ExitUsage
			}
		}
		return runChannels(*channels, base, *asJSON, stdout, stderr)
	}
	base := d
	base.Hosts, base.Duration, base.Seed, base.Emergency, base.Canaries = *hosts, *duration, *seed, *emergency, *canaries
	base.CheckIn, base.Offline, base.BackgroundRate = *checkIn, *offline, *background
	scs, err := parseList(*scenarios, fleetsim.ParseScenario)
	if err != nil {
		fmt.Fprintf(stderr, "ringfence-sim: --scenarios: %v\n", err)
		return cli.ExitUsage
	}
	pols, err := parseList(*policies, fleetsim.ParsePolicy)
	if err != nil {
		fmt.Fprintf(stderr, "ringfence-sim: --policies: %v\n", err)
		return cli.ExitUsage
	}
	for _, s := range scs {
		p := base
		p.Scenario = s
		for _, pol := range pols {
			p.Policy = pol
			if err := p.Check(); err != nil {
				fmt.Fprintln(stderr, "ringfence-sim:", err)
				return cli.ExitUsage
			}
		}
	}

	start := time.Now()
	var jobs []fleetsim.Params
	for _, s := range scs {
		for _, pol := range pols {
			for _, guard := range []bool{true, false} {
				p := base
				p.Scenario, p.Policy, p.Guard = s, pol, guard
				jobs = append(jobs, p)
			}
		}
	}
	results, err := runAll(jobs)
	if err != nil {
		fmt.Fprintln(stderr, "ringfence-sim:", err)
		return cli.ExitUsage
	}
	var rows []row
	for i := 0; i < len(results); i += 2 {
		rows = append(rows, row{Result: results[i], DownNoGuard: results[i+1].Down})
	}
	var rs []rates
	if *reps > 0 {
		var rjobs []fleetsim.Params
		for _, s := range scs {
			for i := range *reps {
				p := base
				p.Scenario, p.Policy, p.Guard, p.Seed = s, fleetsim.Ringfence, true, base.Seed+1000+uint64(i)
				if *repsHosts > 0 {
					p.Hosts = *repsHosts
				}
				rjobs = append(rjobs, p)
			}
		}
		rr, err := runAll(rjobs)
		if err != nil {
			fmt.Fprintln(stderr, "ringfence-sim:", err)
			return cli.ExitUsage
		}
		for i, s := range scs {
			rs = append(rs, summarize(s, rr[i**reps:(i+1)**reps]))
		}
	}
	var emergencyRun *fleetsim.Result
	if *goals {
		p := base
		p.Scenario, p.Policy, p.Guard, p.Emergency = fleetsim.Healthy, fleetsim.Ringfence, true, true
		if emergencyRun, err = fleetsim.Run(p); err != nil {
			fmt.Fprintln(stderr, "ringfence-sim:", err)
			return cli.ExitUsage
		}
	}
	elapsed := time.Since(start)

	if *svg != "" {
		if err := atomicfile.WriteFile(*svg, []byte(chart(rows, base)), 0o644); err != nil {
			fmt.Fprintln(stderr, "ringfence-sim:", err)
			return cli.ExitUsage
		}
	}
	if *asJSON {
		out := struct {
			Params fleetsim.Params `json:"params"`
			Runs   []row           `json:"runs"`
			Rates  []rates         `json:"rates,omitempty"`
		}{base, rows, rs}
		for i := range out.Runs {
			out.Runs[i].Decisions = nil // long; the table's numbers are what JSON users want
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
		return cli.ExitOK
	}
	table(stdout, base, rows, rs, elapsed)
	if *goals {
		repHosts := base.Hosts
		if *repsHosts > 0 {
			repHosts = *repsHosts
		}
		printGoals(stdout, checkGoals(base, rows, rs, repHosts, emergencyRun))
	}
	return cli.ExitOK
}

// parseList parses a comma-separated flag value with parse.
func parseList[T any](s string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := parse(f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// join is vs as a flag value: comma-separated.
func join[T fmt.Stringer](vs []T) string {
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.String()
	}
	return strings.Join(names, ",")
}

// runAll runs jobs on every core, results in order.
func runAll(jobs []fleetsim.Params) ([]*fleetsim.Result, error) {
	out := make([]*fleetsim.Result, len(jobs))
	err := parallel(len(jobs), func(i int) (err error) {
		out[i], err = fleetsim.Run(jobs[i])
		return err
	})
	return out, err
}

// parallel calls f(0..n-1) on every core; the error is the first by index.
func parallel(n int, f func(i int) error) error {
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(1, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = f(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func summarize(scenario fleetsim.Scenario, rs []*fleetsim.Result) rates {
	r := rates{Scenario: scenario, Runs: len(rs), Reach99: [3]time.Duration{-1, -1, -1}}
	var after, reach []time.Duration
	var loaded []int
	for _, x := range rs {
		if x.Halted {
			r.Halted++
			after = append(after, x.HaltAfterReport)
			if x.Loaded*100 < x.Hosts {
				r.Below1++
			}
			if x.Loaded*10 < x.Hosts {
				r.Below10++
			}
		}
		if x.Reach99 >= 0 {
			reach = append(reach, x.Reach99)
		}
		loaded = append(loaded, x.Loaded)
		r.MaxLoaded = max(r.MaxLoaded, x.Loaded)
	}
	if len(after) > 0 {
		slices.Sort(after)
		r.MedianHaltAfterReport = after[len(after)/2]
	}
	slices.Sort(loaded)
	r.Loaded50, r.Loaded99 = loaded[len(loaded)/2], loaded[min(len(loaded)-1, len(loaded)*99/100)]
	if len(reach) > 0 {
		slices.Sort(reach)
		r.Reach99 = [3]time.Duration{reach[len(reach)/2], reach[min(len(reach)-1, len(reach)*95/100)], reach[len(reach)-1]}
	}
	return r
}

// num formats n with thousands separators.
func num(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func dur(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	if d < time.Hour {
		return d.Round(time.Second).String()
	}
	return fmt.Sprintf("%.1fh", d.Hours())
}

func table(w io.Writer, p fleetsim.Params, rows []row, rs []rates, elapsed time.Duration) {
	sched := "standard"
	if p.Emergency {
		sched = "emergency"
	}
	fmt.Fprintf(w, "ringfence-sim: %s hosts, %v simulated, seed %d; canary group %d, check-in %v, %.1f%% offline, %.0e crashes per host-hour; ringfence %s schedule\n\n",
		num(p.Hosts), p.Duration, p.Seed, p.Canaries, p.CheckIn, p.Offline*100, p.BackgroundRate, sched)
	fmt.Fprintf(w, "%-15s %-12s %12s %12s %10s %14s %8s %12s %10s\n", "scenario", "policy", "loaded", "crashed", "down", "down no guard", "halt", "after report", "99% at")
	for _, r := range rows {
		fmt.Fprintf(w, "%-15s %-12s %12s %12s %10s %14s %8s %12s %10s\n", r.Scenario, r.Policy, num(r.Loaded), num(r.Crashed), num(r.Down), num(r.DownNoGuard),
			dur(r.HaltAfter), dur(r.HaltAfterReport), dur(r.Reach99))
	}
	if len(rs) > 0 {
		fmt.Fprintf(w, "\nringfence over %d seeds (exposed: hosts that loaded the version; 99%% at: when healthy content reached 99%% of the fleet):\n", rs[0].Runs)
		fmt.Fprintf(w, "  %-15s %10s %10s %10s %12s %12s %12s %20s %22s\n", "scenario", "halted", "before 1%", "before 10%", "exposed p50", "exposed p99", "exposed max", "halt after report p50", "99% at p50/p95/max")
		for _, r := range rs {
			pct := func(n int) string { return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(r.Runs)) }
			reach := "-"
			if r.Reach99[0] >= 0 {
				reach = dur(r.Reach99[0]) + "/" + dur(r.Reach99[1]) + "/" + dur(r.Reach99[2])
			}
			after := "-"
			if r.Halted > 0 {
				after = dur(r.MedianHaltAfterReport)
			}
			fmt.Fprintf(w, "  %-15s %10s %10s %10s %12s %12s %12s %20s %22s\n", r.Scenario, pct(r.Halted), pct(r.Below1), pct(r.Below10),
				num(r.Loaded50), num(r.Loaded99), num(r.MaxLoaded), after, reach)
		}
	}
	fmt.Fprintf(w, "\n%d runs in %v wall time\n", 2*len(rows)+func() int {
		n := 0
		for _, r := range rs {
			n += r.Runs
		}
		return n
	}(), elapsed.Round(100*time.Millisecond))
}

var colors = map[fleetsim.Policy]string{fleetsim.AllAtOnce: "#d62728", fleetsim.Waves: "#ff7f0e", fleetsim.Ringfence: "#1f77b4"}

// chart draws one panel per scenario: hosts that ever loaded the version
// over time, one line per policy, on a log scale (a canary group and a
// whole fleet on one axis).
func chart(rows []row, p fleetsim.Params) string {
	var scs []fleetsim.Scenario
	for _, r := range rows {
		if len(scs) == 0 || scs[len(scs)-1] != r.Scenario {
			scs = append(scs, r.Scenario)
		}
	}
	const pw, ph, ml, mt, mb, gap = 420, 240, 80, 40, 40, 30
	width := ml + len(scs)*(pw+gap)
	height := mt + ph + mb + 30
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">Hosts that loaded the new version (%s hosts, log scale)</text>`+"\n", ml, num(p.Hosts))
	top := 1.0
	for n := p.Hosts; n >= 10; n /= 10 {
		top++
	}
	y := func(n int) float64 {
		v := 0.0
		if n > 0 {
			v = math.Log10(float64(n)) + 1
		}
		return float64(mt+ph) - v/(top+1)*ph
	}
	for i, sc := range scs {
		x0 := ml + i*(pw+gap)
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", x0, mt-8, sc)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", x0, mt, pw, ph)
		for n := 1; n <= p.Hosts; n *= 10 {
			fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", x0, x0+pw, y(n), y(n))
			if i == 0 {
				fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-4, y(n)+4, num(n))
			}
		}
		hours := p.Duration.Hours()
		for h := 0.0; h <= hours; h += 12 {
			x := float64(x0) + h/hours*pw
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%gh</text>`+"\n", x, mt+ph+16, h)
		}
		for _, r := range rows {
			if r.Scenario != sc {
				continue
			}
			var pts []string
			for _, s := range r.Series {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", float64(x0)+s.At.Hours()/hours*pw, y(s.Exposed)))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", colors[r.Policy], strings.Join(pts, " "))
		}
	}
	lx := ml
	for _, pol := range fleetsim.Policies {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="14" height="4" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", lx, height-16, colors[pol], lx+18, height-11, pol)
		lx += 130
	}
	b.WriteString("</svg>\n")
	return b.String()
}

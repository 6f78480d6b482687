package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ringfence/ringfence/fleetsim"
	"github.com/ringfence/ringfence/internal/cli"
)

// channelHosts is the fleet of --channels unless --hosts says otherwise:
// the times it measures come from the stages' bakes and the hosts' trials,
// not the fleet's size, and a table of K = 1, 2, 3, 5 takes seconds.
const channelHosts = 1_000_000

// channelRow is one K: K channels with overlapping trials, and with one
// trial at a time per host.
type channelRow struct {
	K        int                      `json:"channels"`
	Overlap  *fleetsim.ChannelsResult `json:"overlap"`
	OneTrial *fleetsim.ChannelsResult `json:"one_trial"`
}

// parseChannels parses --channels: channel counts, 1 always among them (the
// reference), sorted, each once.
func parseChannels(s string) ([]int, error) {
	ks, err := parseList(s, func(f string) (int, error) {
		k, err := strconv.Atoi(f)
		if err != nil || k < 1 || k > fleetsim.MaxChannels {
			return 0, fmt.Errorf("%q: want a number of channels, 1..%d", f, fleetsim.MaxChannels)
		}
		return k, nil
	})
	if err != nil {
		return nil, err
	}
	ks = append(ks, 1)
	slices.Sort(ks)
	return slices.Compact(ks), nil
}

func runChannels(list string, p fleetsim.Params, asJSON bool, stdout, stderr io.Writer) int {
	ks, err := parseChannels(list)
	if err != nil {
		fmt.Fprintf(stderr, "ringfence-sim: --channels: %v\n", err)
		return cli.ExitUsage
	}
	p.Scenario, p.Policy = fleetsim.Healthy, fleetsim.Ringfence
	if err := p.Check(); err != nil {
		fmt.Fprintln(stderr, "ringfence-sim:", err)
		return cli.ExitUsage
	}
	start := time.Now()
	rows := make([]channelRow, len(ks))
	for i, k := range ks {
		rows[i].K = k
	}
	// The largest runs first, so that the cores finish together.
	order := make([]int, 0, 2*len(ks))
	for i := len(ks) - 1; i >= 0; i-- {
		order = append(order, 2*i+1, 2*i)
	}
	err = parallel(len(order), func(j int) error {
		i, one := order[j]/2, order[j]%2 == 1
		r, err := fleetsim.Channels(p, ks[i], one)
		if err != nil {
			return err
		}
		for _, run := range r.Runs {
			run.Decisions = nil // long; the times are what the table reads
		}
		if one {
			rows[i].OneTrial = r
		} else {
			rows[i].Overlap = r
		}
		return nil
	})
	if err != nil {
		fmt.Fprintln(stderr, "ringfence-sim:", err)
		return cli.ExitUsage
	}
	elapsed := time.Since(start)
	if asJSON {
		out := struct {
			Params   fleetsim.Params `json:"params"`
			Channels []channelRow    `json:"channels"`
		}{p, rows}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
		return cli.ExitOK
	}
	channelTable(stdout, p, rows, elapsed)
	return cli.ExitOK
}

// hm is a time of the channels table: hours and minutes.
func hm(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	d = d.Round(time.Minute)
	if d < time.Hour {
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%dh%02dm", d/time.Hour, d%time.Hour/time.Minute)
}

// rule is title centred in a line of dashes width long.
func rule(title string, width int) string {
	title = " " + title + " "
	left := (width - len(title)) / 2
	return strings.Repeat("-", left) + title + strings.Repeat("-", width-left-len(title))
}

// ratio is a/b, or "-" when either never came.
func ratio(a, b time.Duration) string {
	if a < 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

func channelTable(w io.Writer, p fleetsim.Params, rows []channelRow, elapsed time.Duration) {
	sched := "standard"
	if p.Emergency {
		sched = "emergency"
	}
	fmt.Fprintf(w, "ringfence-sim: K channels on the same %s hosts, each a healthy update under its own ringfence rollout (%s schedule), all started at once; %v simulated, seed %d; check-in %v, health window %v, canary group %d, %.1f%% offline\n\n",
		num(p.Hosts), sched, p.Duration, p.Seed, p.CheckIn, p.HealthWindow, p.Canaries, p.Offline*100)
	fmt.Fprintf(w, "%8s  %s     %s\n", "", rule("trials overlap", 28), rule("one trial at a time", 49))
	fmt.Fprintf(w, "%8s  %10s %10s %6s     %10s %10s %6s %11s %8s\n", "channels", "every 99%", "mean 99%", "vs 1", "every 99%", "mean 99%", "vs 1", "vs overlap", "waited")
	one := rows[0] // K = 1, the reference
	var halted []string
	runs := 0
	for _, r := range rows {
		o, t := r.Overlap, r.OneTrial
		waited := "-"
		if t.Loaded > 0 {
			waited = fmt.Sprintf("%.1f%%", 100*float64(t.Waited)/float64(t.Loaded))
		}
		fmt.Fprintf(w, "%8d  %10s %10s %6s     %10s %10s %6s %11s %8s\n", r.K,
			hm(o.Reach99), hm(o.Mean99), ratio(o.Reach99, one.Overlap.Reach99),
			hm(t.Reach99), hm(t.Mean99), ratio(t.Reach99, one.OneTrial.Reach99), ratio(t.Reach99, o.Reach99), waited)
		for _, x := range []*fleetsim.ChannelsResult{o, t} {
			runs += x.Channels
			if x.Halted > 0 {
				mode := "overlapping trials"
				if x.OneTrial {
					mode = "one trial at a time"
				}
				halted = append(halted, fmt.Sprintf("%d of the %d channels with %s", x.Halted, x.Channels, mode))
			}
		}
	}
	fmt.Fprintln(w, "\nevery 99%: when every channel had reached 99% of the fleet; mean 99%: the mean of when each did; vs 1: every 99% over")
	fmt.Fprintln(w, "one channel's; waited: the hosts' new versions that waited for another channel's trial, of those taken.")
	for _, h := range halted {
		fmt.Fprintf(w, "halted (a false halt: the updates are healthy): %s\n", h)
	}
	fmt.Fprintf(w, "\n%d channel runs in %v wall time\n", runs, elapsed.Round(100*time.Millisecond))
}

package main

import (
	"fmt"
	"io"
	"time"

	"github.com/ringfence/ringfence/fleetsim"
)

// goal is one of the simulator's goals (docs/fleetsim.md) and what a run
// measured of it.
type goal struct {
	What, Target, Measured string
	Met                    bool
	Run                    bool // false: the runs it needs were not made
}

// checkGoals measures the goals on the table's rows (one run each at
// p.Hosts), the seeds' rates (at repHosts) and the healthy run on the
// emergency schedule.
func checkGoals(p fleetsim.Params, rows []row, rs []rates, repHosts int, emergency *fleetsim.Result) []goal {
	ring := map[fleetsim.Scenario]*fleetsim.Result{}
	for _, r := range rows {
		if r.Policy == fleetsim.Ringfence {
			ring[r.Scenario] = r.Result
		}
	}
	rate := map[fleetsim.Scenario]rates{}
	for _, r := range rs {
		rate[r.Scenario] = r
	}
	var out []goal
	hosts := num(p.Hosts)
	reach := func(what string, r *fleetsim.Result, limit time.Duration) {
		g := goal{What: what, Target: "<= " + dur(limit)}
		if r != nil {
			g.Run = true
			g.Measured = dur(r.Reach99)
			g.Met = r.Reach99 >= 0 && r.Reach99 <= limit && !r.Halted
		}
		out = append(out, g)
	}
	reach(fmt.Sprintf("healthy content reaches 99%% of %s hosts, standard schedule", hosts), ring[fleetsim.Healthy], 4*time.Hour)
	reach(fmt.Sprintf("healthy content reaches 99%% of %s hosts, emergency schedule", hosts), emergency, time.Hour)
	seeds := func(s fleetsim.Scenario, what string, below func(rates) int, share float64) {
		g := goal{What: fmt.Sprintf("%s, over seeds at %s hosts", what, num(repHosts)), Target: fmt.Sprintf(">= %.0f%% of seeds", 100*share)}
		if r, ok := rate[s]; ok && r.Runs > 0 {
			g.Run = true
			n := below(r)
			g.Measured = fmt.Sprintf("%d of %d (%.1f%%)", n, r.Runs, 100*float64(n)/float64(r.Runs))
			g.Met = float64(n) >= share*float64(r.Runs)
		}
		out = append(out, g)
	}
	b1 := func(r rates) int { return r.Below1 }
	b10 := func(r rates) int { return r.Below10 }
	seeds(fleetsim.Background10x, "a 10x background crash rise halted before 1% of the fleet has it", b1, 0.99)
	seeds(fleetsim.Background3x, "a 3x rise halted before 10%", b10, 0.90)
	seeds(fleetsim.CPUDouble, "CPU doubling halted before 1%", b1, 0.99)
	seeds(fleetsim.SilentSensor, "a silent sensor halted before 1%", b1, 0.99)
	g := goal{What: fmt.Sprintf("false halts of healthy content, over seeds at %s hosts", num(repHosts)), Target: "< 1 in 100"}
	if r, ok := rate[fleetsim.Healthy]; ok && r.Runs > 0 {
		g.Run, g.Measured, g.Met = true, fmt.Sprintf("%d of %d", r.Halted, r.Runs), r.Halted*100 < r.Runs
	}
	out = append(out, g)
	if r := ring[fleetsim.CrashAll]; r != nil {
		out = append(out,
			goal{What: fmt.Sprintf("the 2024 case exposes at most 100 of %s hosts", hosts), Target: "<= 100", Measured: num(r.Loaded), Met: r.Loaded <= 100, Run: true},
			goal{What: "the 2024 case halts at the first canary report", Target: "0s after it", Measured: dur(r.HaltAfterReport) + " after it", Met: r.Halted && r.HaltAfterReport == 0, Run: true},
			goal{What: "the 2024 case leaves no host down (with the guard)", Target: "0", Measured: num(r.Down), Met: r.Down == 0, Run: true})
	} else {
		out = append(out, goal{What: "the 2024 case exposes at most 100 hosts", Target: "<= 100"})
	}
	return out
}

func printGoals(w io.Writer, gs []goal) {
	fmt.Fprintf(w, "\ngoals:\n")
	for _, g := range gs {
		verdict := "MET"
		switch {
		case !g.Run:
			verdict, g.Measured = "not run", "-"
		case !g.Met:
			verdict = "MISSED"
		}
		fmt.Fprintf(w, "  %-7s %-92s %-18s %s\n", verdict, g.What, g.Target, g.Measured)
	}
}

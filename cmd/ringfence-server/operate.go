package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ringfence/ringfence/compat"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/internal/cli"
	"github.com/ringfence/ringfence/server"
)

const rolloutStartHelp = `
Start begins a rollout of a published content version on a channel, from the
version the channel runs now (--from overrides). The default plan is the
canary group (the server's --canary-hosts/--canary-tags, or this command's)
with a first wave of 10 of its hosts, then 0.1%, 0.8%, 8%, 50% and 100% of
hosts, each with a bake time and a minimum number of hosts that must report
healthy; the 0.8% and 8% stages also wait for evidence (docs/gate.md);
--schedule emergency bakes a sixth as long with the same gates. --stages FILE
replaces the plan, a JSON list:

  [{"name": "canary", "tags": ["canary"], "bake": "30m", "min_hosts": 5, "wave": 10},
   {"name": "1%", "percent": 1, "bake": "1h", "min_hosts": 50,
    "min_evidence": 3, "max_bake": "4h"},
   {"name": "all", "percent": 100, "min_hosts": 500}]

Stages are nested; the last must be 100%. A stage advances when min_hosts of
its hosts (all of them, if it has fewer) reported healthy and either the
promotion test shows the new version no more than 2x worse than the controls
or its bake time has passed (and the evidence it waits for is there, or its
max_bake has passed).

--slo FILE adds SLO checks, a JSON list (at most 16): PromQL instant queries
that return one number, with a max, a min or both, and a grace, which the
server (started with --prometheus) runs at each evaluation:

  [{"name": "error-rate", "max": 0.02, "grace": "5m",
    "query": "sum(rate(http_errors_total{version=\"{{version}}\"}[5m])) / sum(rate(http_requests_total{version=\"{{version}}\"}[5m]))"}]

{{version}} and {{channel}} in a query become the rollout's version and
channel, so one file serves every rollout. A value beyond a bound, or no
data for longer than the grace, halts the rollout and rolls it back (unless
--manual-rollback), as the gate does (docs/slo.md).

The server signs the plan for the first stage at once; the gate moves it on.`

const rolloutActionHelp = `
%s a channel's rollout. Every action is recorded with --who and --why in the
rollout's decision log.
  pause     stop advancing (the gate still watches, and still halts)
  resume    continue a paused or halted rollout
  halt      freeze where it is: no host newly gets the version
  rollback  send every host back to the version the rollout started from,
            and deny the new version (hosts that have it revert)
  promote   start the next stage now, without waiting for its bake time`

// actionSummaries are the rollout actions' lines in 'rollout help'.
var actionSummaries = map[controller.Kind]string{
	controller.KindPause:    "stop advancing (the gate still watches, and still halts)",
	controller.KindResume:   "continue a paused or halted rollout",
	controller.KindHalt:     "freeze where it is: no host newly gets the version",
	controller.KindRollback: "send every host back to the version the rollout started from, and deny the new one",
	controller.KindPromote:  "start the next stage now, without waiting for its bake time",
}

func rolloutCommands() []cli.Command {
	cmds := []cli.Command{
		{Name: "start", Summary: "begin a rollout of a published content version", Run: rolloutStart},
		{Name: "status", Summary: "show each channel's rollout: state, stages, gate, decisions", Run: rolloutStatus},
	}
	for _, a := range controller.Actions {
		cmds = append(cmds, cli.Command{Name: a.String(), Summary: actionSummaries[a],
			Run: func(args []string, stdout, stderr io.Writer) int { return rolloutAction(a, args, stdout, stderr) }})
	}
	return append(cmds,
		cli.Command{Name: "allow", Summary: "take a version off the channel's deny list", Run: rolloutAllow},
		cli.Command{Name: "set", Summary: "sign a rollout plan by hand, without the server", Run: rolloutSet})
}

func whoAmI() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "operator"
}

func rolloutStart(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("rollout start", "rollout start --channel N --version V (--state DIR | --server URL) [flags]", rolloutStartHelp, stdout, stderr)
	where := targetFlags(fs)
	channel := fs.Uint("channel", 0, "channel number")
	version := fs.Uint("version", 0, "the content version to roll out (published)")
	from := fs.Uint("from", 0, "the version hosts run now, the rollback target (default: what the channel runs)")
	schedule := fs.String("schedule", controller.ScheduleStandard, "standard or emergency")
	canaryHosts := fs.String("canary-hosts", "", "comma-separated host ids of the canary group")
	canaryTags := fs.String("canary-tags", "", "comma-separated tags of the canary group")
	stagesFile := fs.String("stages", "", "JSON file with the stages (replaces the default plan)")
	health := fs.String("health-window", "", "the hosts' health window (default 10m)")
	grace := fs.String("grace", "", "how late a healthy report may be before silence counts as failure (default 10m)")
	silence := fs.String("silence", "", "how long a control host may go unheard before it counts as failed (default 30m)")
	alpha := fs.Float64("alpha", 0, "the gate's false-halt bound over the rollout (default 0.001)")
	manual := fs.Bool("manual-rollback", false, "on a gate halt, stay halted instead of rolling back by itself")
	sloFile := fs.String("slo", "", "JSON file with SLO checks (PromQL queries with bounds; the server needs --prometheus)")
	who := fs.String("who", whoAmI(), "who starts it (recorded)")
	why := fs.String("why", "", "why (recorded)")
	if _, code, ok := cli.ParseArgs(fs, args, stdout); !ok {
		return code
	}
	if *channel == 0 || *version == 0 {
		fmt.Fprintln(stderr, "ringfence-server rollout start: --channel and --version are required")
		return cli.ExitUsage
	}
	q := server.StartRequest{ActionRequest: server.ActionRequest{Who: *who, Why: *why}, Channel: uint32(*channel), Version: uint32(*version),
		From: uint32(*from), Schedule: *schedule, CanaryHosts: splitList(*canaryHosts), CanaryTags: splitList(*canaryTags),
		HealthWindow: *health, Grace: *grace, Silence: *silence, Alpha: *alpha, ManualRollback: *manual}
	if *stagesFile != "" {
		if err := readJSONFile("--stages", *stagesFile, &q.Stages); err != nil {
			return fail(stderr, "rollout start", err)
		}
	}
	if *sloFile != "" {
		if err := readJSONFile("--slo", *sloFile, &q.SLO); err != nil {
			return fail(stderr, "rollout start", err)
		}
	}
	t, ok := where(stderr, "rollout start")
	if !ok {
		return cli.ExitUsage
	}
	defer t.close()
	d, v, err := t.ops.Start(context.Background(), q)
	return decided(stdout, stderr, "rollout start", d, v, err)
}

// maxStagesFile bounds the --stages and --slo files: they travel in the
// start request, whose body the server takes up to 64 KiB of.
const maxStagesFile = 64 << 10

// readJSONFile reads the JSON file of a flag into v, strictly (a field
// the request does not know is an error, not silently dropped).
func readJSONFile(flag, path string, v any) error {
	b, err := boundedio.ReadFile(path, maxStagesFile)
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s %s: %w", flag, path, err)
	}
	return nil
}

func rolloutAction(action controller.Kind, args []string, stdout, stderr io.Writer) int {
	cmd := "rollout " + action.String()
	fs := newFlags(cmd, cmd+" --channel N --why TEXT (--state DIR | --server URL)", fmt.Sprintf(rolloutActionHelp, strings.ToUpper(action.String()[:1])+action.String()[1:]), stdout, stderr)
	where := targetFlags(fs)
	channel := fs.Uint("channel", 0, "channel number")
	who := fs.String("who", whoAmI(), "who acts (recorded)")
	why := fs.String("why", "", "why (required; recorded)")
	if _, code, ok := cli.ParseArgs(fs, args, stdout); !ok {
		return code
	}
	if *channel == 0 || *why == "" {
		fmt.Fprintf(stderr, "ringfence-server %s: --channel and --why are required\n", cmd)
		return cli.ExitUsage
	}
	t, ok := where(stderr, cmd)
	if !ok {
		return cli.ExitUsage
	}
	defer t.close()
	d, v, err := t.ops.Act(context.Background(), uint32(*channel), action, *who, *why)
	return decided(stdout, stderr, cmd, d, v, err)
}

// decided prints an operator command's decision and the rollout after it,
// or why it was refused.
func decided(stdout, stderr io.Writer, cmd string, d controller.Decision, v server.View, err error) int {
	if err != nil {
		fmt.Fprintf(stderr, "ringfence-server %s: %v\n", cmd, err)
		return cli.ExitRejected
	}
	fmt.Fprintf(stdout, "channel %d: %s by %s: %s\n", v.Channel, d.Kind, d.Actor, d.Reason)
	printView(stdout, v, 0)
	return cli.ExitOK
}

func rolloutStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("rollout status", "rollout status [--channel N] (--state DIR | --server URL) [--json]", `
Status shows each channel's rollout: state, stages, hosts per version, the
new version's compatibility constraint (the sensor versions it may run on),
the channel's hosts per sensor version with those the constraint keeps out
of the rollout marked "(excluded)", the gate's statistic against its
threshold, and the newest decisions with their evidence. Without a running
server it reads the state directory.`, stdout, stderr)
	where := targetFlags(fs)
	channel := fs.Uint("channel", 0, "only this channel")
	asJSON := fs.Bool("json", false, "print the rollouts as JSON (the API's shape)")
	decisions := fs.Int("decisions", 5, "how many of the newest decisions to show")
	if _, code, ok := cli.ParseArgs(fs, args, stdout); !ok {
		return code
	}
	t, ok := where(stderr, "rollout status")
	if !ok {
		return cli.ExitUsage
	}
	defer t.close()
	vs, err := t.ops.Rollouts(context.Background())
	if err != nil {
		return fail(stderr, "rollout status", err)
	}
	out := []server.View{}
	for _, v := range vs {
		if *channel == 0 || v.Channel == uint32(*channel) {
			out = append(out, v)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
		return cli.ExitOK
	}
	if len(out) == 0 {
		fmt.Fprintln(stdout, "no rollouts; start one with 'ringfence-server rollout start'")
	}
	for _, v := range out {
		printView(stdout, v, *decisions)
	}
	return cli.ExitOK
}

// printView prints a rollout for a terminal.
func printView(w io.Writer, v server.View, decisions int) {
	from := "(none)"
	if v.From != 0 {
		from = fmt.Sprint(v.From)
	}
	fmt.Fprintf(w, "channel %d: %s -> %d  %s  (%s schedule, stage %d of %d: %s)\n", v.Channel, from, v.To,
		strings.ToUpper(v.State.String()), v.Schedule, v.Stage+1, len(v.Stages), v.Stages[min(v.Stage, len(v.Stages)-1)].Name)
	var st []string
	for _, s := range v.Stages {
		mark := map[server.StageStatus]string{server.StageDone: "+", server.StageCurrent: ">", server.StagePending: " "}[s.Status]
		st = append(st, fmt.Sprintf("%s%s(%d)", mark, s.Name, s.KnownHosts))
	}
	fmt.Fprintf(w, "  stages:   %s\n", strings.Join(st, " "))
	var vers []string
	for k, n := range v.Versions {
		vers = append(vers, fmt.Sprintf("%s: %d", k, n))
	}
	slices.Sort(vers)
	fmt.Fprintf(w, "  hosts:    %s\n", strings.Join(vers, ", "))
	fmt.Fprintf(w, "  compat:   %v\n", v.Compat)
	fmt.Fprintf(w, "  sensors:  %s\n", sensorsText(v))
	g := v.Gate
	fmt.Fprintf(w, "  gate:     statistic %.2f, threshold %.2f (alpha %g); treated %d (%d failed), control %d (%d failed)\n",
		g.Statistic, g.Threshold, g.Alpha, g.Treated, g.TreatedFailures, g.Control, g.ControlFailures)
	promoted := "not yet"
	switch {
	case g.Promote.Off:
		promoted = "off"
	case g.Promoted:
		promoted = "passed"
	}
	fmt.Fprintf(w, "  tests:    reported %.2f, silence %.2f, health %.2f (%d judged, %d unhealthy, p0 %.2g); expected failures %.2f; promotion %s\n",
		g.Reported, g.Silence, g.Health, g.TreatedJudged, g.TreatedUnhealthy, g.HealthP0, g.Expected, promoted)
	for i, c := range v.SLO {
		label := "  slo:      "
		if i > 0 {
			label = "            "
		}
		fmt.Fprintf(w, "%s%s\n", label, sloText(c))
	}
	if len(v.Deny) > 0 {
		fmt.Fprintf(w, "  denied:   %v\n", v.Deny)
	}
	for i, d := range v.Decisions {
		if i >= decisions {
			break
		}
		fmt.Fprintf(w, "  %s  %-8s %-9s by %s: %s\n", d.Time.Local().Format(time.DateTime), d.Kind, stageName(v, d.Stage), d.Actor, d.Reason)
	}
}

// sensorsText is the hosts on a rollout's channel per sensor version,
// those the constraint keeps out marked, and for a constrained version how
// many hosts that leaves out: "7.11 3 hosts (excluded), 7.12 5 hosts; 3
// hosts excluded from the rollout". The count is the hosts as they are
// now, not the gate's at its last evaluation.
func sensorsText(v server.View) string {
	var parts []string
	excluded := 0
	for _, s := range slices.SortedFunc(maps.Keys(v.Sensors), bySensor) {
		p := fmt.Sprintf("%s %s", s, plural(v.Sensors[s], "host"))
		if slices.Contains(v.Excludes, s) {
			p += " (excluded)"
			excluded += v.Sensors[s]
		}
		parts = append(parts, p)
	}
	out := strings.Join(parts, ", ")
	if out == "" {
		out = "no hosts on the channel yet"
	}
	if !v.Compat.Any() {
		out += fmt.Sprintf("; %s excluded from the rollout", plural(excluded, "host"))
	}
	return out
}

// sloText is an SLO check for a terminal: its name, bounds and grace, and
// what its last evaluation found: "error-rate (max 0.02, grace 5m0s) at
// 10:02:11: 0.0031".
func sloText(c server.SLOView) string {
	var bounds []string
	if c.Min != nil {
		bounds = append(bounds, "min "+number(*c.Min))
	}
	if c.Max != nil {
		bounds = append(bounds, "max "+number(*c.Max))
	}
	if c.Grace != "" {
		bounds = append(bounds, "grace "+c.Grace)
	}
	s := fmt.Sprintf("%s (%s)", c.Name, strings.Join(bounds, ", "))
	l := c.Last
	switch {
	case l == nil && c.Unwatched != "":
		return s + ": NOT EVALUATED: " + c.Unwatched
	case l == nil:
		return s + ": not evaluated yet"
	}
	s += " at " + l.At.Local().Format(time.TimeOnly) + ": "
	switch {
	case l.Breach != "":
		return s + "BREACHED: " + strings.TrimPrefix(l.Breach, "SLO check "+c.Name+" breached: ")
	case l.NoData:
		s += "no data"
		if !l.LastData.IsZero() {
			s += fmt.Sprintf(" since %s (last value %s)", l.LastData.Local().Format(time.TimeOnly), value(*l.Value))
		}
		if l.Error != "" {
			s += "; the query failed: " + l.Error
		}
		return s
	}
	return s + value(*l.Value)
}

// value is a check's value for a terminal: 6 significant digits, enough
// to compare it with its bounds at a glance (the decision that halts a
// rollout records it in full).
func value(x float64) string {
	if math.Abs(x) == math.MaxFloat64 {
		return number(x)
	}
	return strconv.FormatFloat(x, 'g', 6, 64)
}

// number formats a check's value or bound; JSON's stand-ins for the
// infinities (the largest float64) are shown as such.
func number(x float64) string {
	switch {
	case x == math.MaxFloat64:
		return "+Inf"
	case x == -math.MaxFloat64:
		return "-Inf"
	}
	return strconv.FormatFloat(x, 'g', -1, 64)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// bySensor orders the sensor versions of a view: compat.Compare, and
// "unknown" (hosts that did not say) last.
func bySensor(a, b string) int {
	if (a == "unknown") != (b == "unknown") {
		if a == "unknown" {
			return 1
		}
		return -1
	}
	return compat.Compare(a, b)
}

func stageName(v server.View, i int) string {
	if i >= 0 && i < len(v.Stages) {
		return v.Stages[i].Name
	}
	return ""
}

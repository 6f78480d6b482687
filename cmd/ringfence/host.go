package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/validator"
	"github.com/ringfence/ringfence/wire"
)

// hostFlags are the flags every host command shares.
type hostFlags struct {
	root    *string
	asJSON  *bool
	channel *uint
}

func addHostFlags(fs interface {
	String(name, value, usage string) *string
	Bool(name string, value bool, usage string) *bool
	Uint(name string, value uint, usage string) *uint
}) hostFlags {
	return hostFlags{
		root:    fs.String("root", hostconfig.DefaultRoot, "Ringfence root directory (channels/<N>/ with each channel's boot record and slots, state.db)"),
		asJSON:  fs.Bool("json", false, "print the result as JSON (field names in docs/recovery.md)"),
		channel: fs.Uint("channel", 0, "the content channel to act on (default: every channel of the root, or its only one)"),
	}
}

// openChannels opens the root (openRoot) and returns it with the Installers
// of the channels the command acts on (channels); the caller closes root.
func openChannels(name string, hf hostFlags, opts installer.Options, stderr io.Writer) (*installer.Installer, []*installer.Installer, bool) {
	root, ok := openRoot(name, hf, opts, stderr)
	if !ok {
		return nil, nil, false
	}
	chs, ok := channels(name, hf, root, stderr)
	if !ok {
		root.Close()
		return nil, nil, false
	}
	return root, chs, true
}

// channels returns the Installers the command acts on: --channel's, or every
// channel of the root (in ascending order, as a loader loads them).
func channels(name string, hf hostFlags, in *installer.Installer, stderr io.Writer) ([]*installer.Installer, bool) {
	all := in.Channels()
	want := all
	if *hf.channel != 0 {
		ch := uint32(min(*hf.channel, 1<<32-1))
		if !slices.Contains(all, ch) {
			fmt.Fprintf(stderr, "ringfence %s: the root %s holds no channel %d (it holds: %s)\n", name, in.Root(), ch, listChannels(all))
			return nil, false
		}
		want = []uint32{ch}
	}
	var out []*installer.Installer
	for _, ch := range want {
		c, err := in.Channel(ch)
		if err != nil {
			fmt.Fprintf(stderr, "ringfence %s: %v\n", name, err)
			return nil, false
		}
		out = append(out, c)
	}
	return out, true
}

func listChannels(chs []uint32) string {
	if len(chs) == 0 {
		return "none yet"
	}
	parts := make([]string, len(chs))
	for i, c := range chs {
		parts[i] = fmt.Sprint(c)
	}
	return strings.Join(parts, ", ")
}

// openRoot opens the installer on --root (with the built-in sensor's
// capabilities unless opts names others); warnings go to stderr unless the
// output is JSON (which carries them).
func openRoot(name string, hf hostFlags, opts installer.Options, stderr io.Writer) (*installer.Installer, bool) {
	if opts.Capabilities == nil {
		opts.Capabilities = sensor.DefaultCapabilities()
	}
	in, err := installer.Open(*hf.root, opts)
	if err != nil {
		fmt.Fprintf(stderr, "ringfence %s: %v\n", name, err)
		return nil, false
	}
	if !*hf.asJSON {
		for _, w := range in.Warnings() {
			fmt.Fprintf(stderr, "ringfence %s: warning: %s\n", name, w)
		}
	}
	return in, true
}

func printJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return exitUsage
	}
	return exitOK
}

func describeEntry(e bootguard.Entry) string {
	return fmt.Sprintf("channel %d version %d", e.Channel, e.Version)
}

// whyText says in words why the loader decided what it did.
var whyText = map[string]string{
	string(bootguard.WhyGood):           "last-known-good",
	string(bootguard.WhyTrial):          "trial",
	string(bootguard.WhyLoadCrash):      "fallback: the trial's last load never finished (load-crash)",
	string(bootguard.WhyTriesExhausted): "fallback: the trial used up its boots (tries-exhausted)",
	string(bootguard.WhyNotLoadable):    "fallback: the active slot holds nothing loadable (not-loadable)",
	string(bootguard.WhyNoContent):      "no content installed",
}

func describeNext(n installer.NextLoad) string {
	why := whyText[n.Why]
	if why == "" {
		why = n.Why
	}
	switch n.Action {
	case "load":
		return fmt.Sprintf("load slot %s: channel %d version %d (%s)", n.Slot, n.Channel, n.Version, why)
	case "safe":
		return "load no content: SAFE MODE, the boot record has no valid copy (run 'ringfence recover')"
	}
	return fmt.Sprintf("load no content (%s)", why)
}

const installHelp = `
Install validates a channel file against the installed interpreter's
capabilities (and the installed version: it must be newer), preflights it in
the reference interpreter in a child process, stages it into the inactive slot
and activates it as a TRIAL: the next boot loads it, with the current
last-known-good as its fallback. This is the offline path for air-gapped hosts
and labs; the daemon uses the same code.

A version that was reverted on this host is quarantined and refused; only a
newer version, or --unquarantine (an explicit admin decision), lets it in.

Exit 0 installed, 1 rejected (invalid, preflight failed, quarantined, a trial
in progress), 2 usage or I/O error.

Example:
  ringfence install --root /var/lib/ringfence good-ipc-1002.rfch`

func runInstall(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("install", "install [--root DIR] [--capabilities FILE] [--json] FILE", installHelp, stdout, stderr)
	hf := addHostFlags(fs)
	capsPath := fs.String("capabilities", "", "capability manifest of the installed interpreter (default: built-in sensor "+sensor.Version+")")
	noPreflight := fs.Bool("no-preflight", false, "skip the preflight run (static validation still runs)")
	unquarantine := fs.Bool("unquarantine", false, "install even if this version was reverted here before (admin override)")
	def := bootguard.DefaultPolicy()
	tries := fs.Uint("tries", uint(def.Tries), "boots the trial gets before it must be marked good (crashes after the load, or reboots, in the health window)")
	loadTries := fs.Uint("load-tries", uint(def.LoadTries), "crashes while loading the trial tolerates (breadcrumb evidence); at most --tries")
	files, code, ok := parseArgs(fs, args, stdout)
	if !ok {
		return code
	}
	if len(files) != 1 {
		fmt.Fprintln(stderr, "ringfence install: give exactly one channel file; see 'ringfence install --help'")
		return exitUsage
	}
	path := files[0]
	caps, err := sensor.LoadCapabilities(*capsPath)
	if err != nil {
		fmt.Fprintf(stderr, "ringfence install: %v\n", err)
		return exitUsage
	}
	pol := bootguard.Policy{Tries: uint8(min(*tries, 255)), LoadTries: uint8(min(*loadTries, 255))}
	if err := pol.Check(); err != nil || *tries > 255 || *loadTries > 255 {
		fmt.Fprintf(stderr, "ringfence install: --tries %d --load-tries %d: need 1 <= load tries <= tries <= 255\n", *tries, *loadTries)
		return exitUsage
	}
	data, err := validator.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "ringfence install: %v\n", err)
		return exitUsage
	}
	// The product's check before anything on the host changes. Install
	// validates again against the installed version: a file must be newer.
	var opts validator.VetOptions
	if !*noPreflight {
		cmd, err := referencePreflight(*capsPath)
		if err != nil {
			fmt.Fprintf(stderr, "ringfence install: %v\n", err)
			return exitUsage
		}
		opts.Preflight = &validator.PreflightOptions{Command: cmd}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	v, err := validator.Vet(ctx, data, caps, opts)
	stop()
	if err != nil {
		fmt.Fprintf(stderr, "ringfence install: %v\n", err)
		return exitUsage
	}
	if !v.Accepted() {
		v.Print(stderr, path)
		fmt.Fprintf(stderr, "ringfence install: %s; nothing was changed\n", v.Refusal(path))
		return exitRejected
	}
	in, ok := openRoot("install", hf, installer.Options{Capabilities: caps, Policy: pol}, stderr)
	if !ok {
		return exitUsage
	}
	defer in.Close()
	st, rec, err := in.Install(data, installer.StageOptions{Unquarantine: *unquarantine})
	if err != nil {
		fmt.Fprintf(stderr, "ringfence install: %s: %v\n", path, err)
		if errors.Is(err, installer.ErrTrialRunning) {
			fmt.Fprintf(stderr, "ringfence install: it is staged in slot %v and waits; run the same install again once that trial is marked good or reverted ('ringfence status')\n", st.Slot)
		}
		if errors.Is(err, installer.ErrInvalid) || errors.Is(err, installer.ErrQuarantined) ||
			errors.Is(err, installer.ErrAlreadyInstalled) || errors.Is(err, bootguard.ErrTrialInProgress) ||
			errors.Is(err, installer.ErrTrialRunning) {
			return exitRejected
		}
		return exitUsage
	}
	if *hf.asJSON {
		return printJSON(stdout, struct {
			Slot     string             `json:"slot"`
			Channel  uint32             `json:"channel"`
			Version  uint32             `json:"version"`
			Fallback string             `json:"fallback"`
			Tries    uint8              `json:"tries_left"`
			Problems validator.Problems `json:"problems"`
			Warnings []string           `json:"warnings"`
		}{st.Slot.String(), st.Channel, st.Version, rec.Fallback.String(), rec.Entry(st.Slot).Tries, st.Problems, in.Warnings()})
	}
	for _, p := range st.Problems {
		fmt.Fprintln(stdout, p.Line(path))
	}
	e := rec.Entry(st.Slot)
	fb := "none (no last-known-good)"
	if rec.Fallback != bootguard.SlotNone {
		fb = fmt.Sprintf("slot %v (%s)", rec.Fallback, describeEntry(*rec.Entry(rec.Fallback)))
	}
	fmt.Fprintf(stdout, "installed %s into slot %v as TRIAL (tries %d, load tries %d); fallback %s\n", describeEntry(*e), st.Slot, e.Tries, e.LoadTries, fb)
	fmt.Fprintln(stdout, "the next boot loads it; 'ringfence mark-good' ends the health window")
	return exitOK
}

const bootHelp = `
Boot runs the loader contract once, exactly as a loader does at boot, on every
channel of the root in ascending order (or the one --channel names): it reads
the channel's boot record, decides which slot to load, writes the breadcrumb
before a trial loads, verifies the slot against its manifest, and prints the
decision.

Without --loaded the breadcrumb stays LOADING, as after a crash during the
load: two 'ringfence boot' in a row on trial content show the fallback. With
--loaded it records that the load finished (breadcrumb LOADED).

Exit 0 (whatever was decided, safe mode included), 2 usage or I/O error.`

func runBoot(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("boot", "boot [--root DIR] [--channel N] [--loaded] [--json]", bootHelp, stdout, stderr)
	hf := addHostFlags(fs)
	loaded := fs.Bool("loaded", false, "record that the load finished and the agent survived (breadcrumb LOADED)")
	if rest, code, ok := parseArgs(fs, args, stdout); !ok {
		return code
	} else if len(rest) > 0 {
		fmt.Fprintf(stderr, "ringfence boot: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	root, chs, ok := openChannels("boot", hf, installer.Options{}, stderr)
	if !ok {
		return exitUsage
	}
	defer root.Close()
	if len(chs) == 0 {
		fmt.Fprintln(stdout, "the root follows no channel yet: load no content")
		return exitOK
	}
	code := exitOK
	for _, in := range chs {
		if len(chs) > 1 && !*hf.asJSON {
			fmt.Fprintf(stdout, "channel %d: ", in.Ch())
		}
		if c := bootOne(in, *loaded, hf, stdout, stderr); c != exitOK {
			code = c
		}
	}
	return code
}

// bootOne runs the loader contract on one channel and prints what it did.
func bootOne(in *installer.Installer, loaded bool, hf hostFlags, stdout, stderr io.Writer) int {
	res, err := in.Boot(loaded)
	if err != nil {
		fmt.Fprintf(stderr, "ringfence boot: channel %d: %v\n", in.Ch(), err)
		return exitUsage
	}
	d := res.Decision
	next := installer.NextLoad{Action: d.Action.String(), Slot: d.Slot.String(), Channel: d.Entry.Channel, Version: d.Entry.Version, Why: string(d.Why)}
	if *hf.asJSON {
		out := struct {
			installer.NextLoad
			Reverted   string   `json:"reverted"`
			Breadcrumb string   `json:"breadcrumb"`
			Loaded     bool     `json:"loaded"`
			Notes      []string `json:"notes"`
			Warnings   []string `json:"warnings"`
		}{next, d.Reverted.String(), "", res.Loaded, res.Notes, in.Warnings()}
		if d.Action == bootguard.ActionLoad {
			out.Breadcrumb = d.Entry.Crumb.String()
			if res.Loaded && d.Entry.State == bootguard.StateTrial {
				out.Breadcrumb = bootguard.CrumbLoaded.String()
			}
		}
		return printJSON(stdout, out)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(stdout, "note: %s\n", n)
	}
	fmt.Fprintln(stdout, describeNext(next))
	if d.Action == bootguard.ActionLoad && d.Entry.State == bootguard.StateTrial {
		switch {
		case res.Loaded:
			fmt.Fprintf(stdout, "trial load finished: breadcrumb LOADED (boots left %d)\n", d.Entry.Tries)
		default:
			fmt.Fprintf(stdout, "breadcrumb LOADING (boots left %d); without --loaded the next boot counts this one as a crash while loading\n", d.Entry.Tries)
		}
	}
	return exitOK
}

const markGoodHelp = `
Mark-good ends the health window by hand: the active TRIAL (of the channel in
its trial, or the one --channel names) becomes the new last-known-good. The trial must have finished loading in this boot
('ringfence boot --loaded'). Exit 0 done, 1 no trial or not loaded, 2 usage or
I/O error.`

func runMarkGood(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("mark-good", "mark-good [--root DIR] [--channel N] [--json]", markGoodHelp, stdout, stderr)
	hf := addHostFlags(fs)
	if rest, code, ok := parseArgs(fs, args, stdout); !ok {
		return code
	} else if len(rest) > 0 {
		fmt.Fprintf(stderr, "ringfence mark-good: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	root, chs, ok := openChannels("mark-good", hf, installer.Options{}, stderr)
	if !ok {
		return exitUsage
	}
	defer root.Close()
	if len(chs) == 0 {
		fmt.Fprintln(stderr, "ringfence mark-good: the root holds no channel yet: nothing to mark good ('ringfence status' shows the channels)")
		return exitRejected
	}
	// Without --channel: the channel in its trial (one at a time).
	in := root
	for _, c := range chs {
		if r, err := bootguard.Read(c.RecordPath()); err == nil && r.Active != bootguard.SlotNone && r.Entry(r.Active).State == bootguard.StateTrial {
			in = c
			break
		}
	}
	if in == root {
		in = chs[0]
	}
	rec, err := in.MarkGood()
	if err != nil {
		hint := ""
		if errors.Is(err, bootguard.ErrNoTrial) {
			hint = "; nothing to mark good ('ringfence status' shows the slots)"
		}
		fmt.Fprintf(stderr, "ringfence mark-good: %v%s\n", err, hint)
		if errors.Is(err, bootguard.ErrNoTrial) || errors.Is(err, bootguard.ErrNotLoaded) {
			return exitRejected
		}
		return exitUsage
	}
	e := rec.Entry(rec.Active)
	if *hf.asJSON {
		return printJSON(stdout, struct {
			Slot    string `json:"slot"`
			Channel uint32 `json:"channel"`
			Version uint32 `json:"version"`
			State   string `json:"state"`
		}{rec.Active.String(), e.Channel, e.Version, e.State.String()})
	}
	fmt.Fprintf(stdout, "slot %v (%s) is now last-known-good\n", rec.Active, describeEntry(*e))
	return exitOK
}

const statusHelp = `
Status prints, for each channel of the root (or the one --channel names), its
boot record (active slot, fallback, each slot's state, version, tries,
breadcrumb, and whether its files verify), what the next boot would load and
why, the last-known-good, then the quarantine list and recent history. It
changes nothing, works on a read-only disk and without state.db.`

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", "status [--root DIR] [--channel N] [--json]", statusHelp, stdout, stderr)
	hf := addHostFlags(fs)
	if rest, code, ok := parseArgs(fs, args, stdout); !ok {
		return code
	} else if len(rest) > 0 {
		fmt.Fprintf(stderr, "ringfence status: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	if _, err := os.Stat(*hf.root); err != nil {
		fmt.Fprintf(stderr, "ringfence status: %v; pass the host's Ringfence directory as --root (the default is %s)\n", err, hostconfig.DefaultRoot)
		return exitUsage
	}
	quiet := true
	in, chs, ok := openChannels("status", hostFlags{root: hf.root, asJSON: &quiet, channel: hf.channel}, installer.Options{ReadOnly: true}, stderr)
	if !ok {
		return exitUsage
	}
	defer in.Close()
	out := hostStatus{Root: in.Root(), Channels: []installer.Status{}, Warnings: append([]string{}, in.Warnings()...)}
	for _, c := range chs {
		st := c.Status()
		st.Warnings = nil // the root's, shown once
		out.Channels = append(out.Channels, st)
	}
	if *hf.asJSON {
		return printJSON(stdout, out)
	}
	if len(chs) == 0 {
		fmt.Fprintf(stdout, "root:            %s (no channel yet: nothing installed)\n", out.Root)
	}
	for i, st := range out.Channels {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		printStatus(stdout, st)
	}
	if len(out.Warnings) > 0 {
		fmt.Fprintln(stdout, "\nwarnings:")
		for _, x := range out.Warnings {
			fmt.Fprintf(stdout, "  %s\n", x)
		}
	}
	printDaemonStatus(stdout, *hf.root, in.Channels())
	return exitOK
}

// hostStatus is 'ringfence status --json': every channel's status.
type hostStatus struct {
	Root     string             `json:"root"`
	Channels []installer.Status `json:"channels"`
	Warnings []string           `json:"warnings"`
}

// printDaemonStatus adds what ringfenced last did, from its status file,
// when a daemon runs on this root.
func printDaemonStatus(w io.Writer, root string, held []uint32) {
	ds, err := daemon.ReadStatus(root)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		fmt.Fprintf(w, "\ndaemon:          status file unreadable: %v\n", err)
		return
	}
	fmt.Fprintf(w, "\ndaemon:          host %s, agent %s, running %s\n", ds.HostID, ds.Agent, ds.Running)
	for _, ch := range held {
		if len(ds.Channels) > 0 && !slices.Contains(ds.Channels, ch) {
			fmt.Fprintf(w, "channel %d:     not followed by the daemon: no updates, but the agent still loads what it holds ('ringfence recover --channel %d --to none' stops that)\n", ch, ch)
		}
	}
	if !ds.LastPoll.IsZero() {
		v := ""
		if ds.Poll.Version != 0 {
			v = fmt.Sprintf(" %d", ds.Poll.Version)
		}
		fmt.Fprintf(w, "last poll:       %s: %s%s (%s)\n", ds.LastPoll.Format(time.RFC3339), ds.Poll.Action, v, ds.Poll.Why)
	}
	if ds.LastCrash != "" {
		first, _, _ := strings.Cut(ds.LastCrash, "\n")
		fmt.Fprintf(w, "last crash:      %s\n", first)
	}
	switch ds.Admission {
	case "":
	case wire.AdmissionAccepted:
		fmt.Fprintf(w, "rollout server:  admitted; telemetry %s\n", ds.Telemetry)
	case wire.AdmissionPending:
		fmt.Fprintf(w, "rollout server:  PENDING admission: nothing this host reports counts until an operator runs 'ringfence-server hosts accept %s' (or the host has a valid telemetry.enrolment_token_file)\n", ds.HostID)
	default:
		fmt.Fprintf(w, "rollout server:  %s: the server refuses this host's reports (%s)\n", strings.ToUpper(ds.Admission.String()), ds.Telemetry)
	}
}

func printStatus(w io.Writer, st installer.Status) {
	if !st.RecordValid {
		fmt.Fprintf(w, "channel %d:     %s (boot record: NO VALID COPY)\n", st.Channel, st.Dir)
		fmt.Fprintf(w, "next boot:       %s\n", describeNext(st.Next))
		fmt.Fprintln(w, "slots:           unknown without the record; 'ringfence recover --dry-run' shows what their manifests hold")
	} else {
		fmt.Fprintf(w, "channel %d:     %s (boot record seq %d)\n", st.Channel, st.Dir, st.Seq)
		fmt.Fprintf(w, "next boot:       %s\n", describeNext(st.Next))
		fmt.Fprintf(w, "active:          %s   fallback: %s   last-known-good: %s\n\n", st.Active, st.Fallback, st.LastGood)
		printSlots(w, st)
	}
	printHistory(w, st)
}

func printSlots(w io.Writer, st installer.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tSTATE\tCHANNEL\tVERSION\tBOOTS LEFT\tLOAD TRIES\tBREADCRUMB\tREASON\tFILES")
	for _, s := range st.Slots {
		mark := " "
		if s.Slot == st.Active {
			mark = "*"
		}
		files := "-"
		switch {
		case s.Verified:
			files = "verified"
		case s.VerifyError != "":
			files = "CORRUPT"
		}
		ver, ch := "-", "-"
		if s.State != bootguard.StateEmpty.String() {
			ver, ch = fmt.Sprint(s.Version), fmt.Sprint(s.Channel)
		}
		tries, loadTries := "-", "-"
		if s.State == bootguard.StateTrial.String() {
			tries, loadTries = fmt.Sprint(s.Tries), fmt.Sprint(s.LoadTries)
		}
		fmt.Fprintf(tw, "%s %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", mark, s.Slot, s.State, ch, ver, tries, loadTries, s.Crumb, orDash(s.Reason), files)
	}
	tw.Flush()
	for _, s := range st.Slots {
		if s.VerifyError != "" {
			fmt.Fprintf(w, "slot %s: %s\n", s.Slot, s.VerifyError)
		}
	}
}

func printHistory(w io.Writer, st installer.Status) {
	if len(st.Quarantined) > 0 {
		fmt.Fprintln(w, "\nquarantined (never installed again automatically):")
		for _, q := range st.Quarantined {
			fmt.Fprintf(w, "  channel %d version %d  %s  %s\n", q.Channel, q.Version, q.Time.UTC().Format(time.RFC3339), q.Reason)
		}
	}
	if len(st.History) > 0 {
		fmt.Fprintln(w, "\nhistory (newest first):")
		for _, h := range st.History {
			fmt.Fprintf(w, "  %s  slot %s  %d:%d  %s -> %s  %s\n", h.Time.UTC().Format(time.RFC3339), h.Slot, h.Channel, h.Version, h.From, h.To, h.Reason)
		}
	}
	if len(st.Warnings) > 0 {
		fmt.Fprintln(w, "\nwarnings:")
		for _, x := range st.Warnings {
			fmt.Fprintf(w, "  %s\n", x)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

const recoverHelp = `
Recover is offline recovery, for a rescue shell, Windows Safe Mode or WinRE
against a mounted disk: no service, no network. For each channel of the root
(or the one --channel names) it reads the channel's boot record, shows what
would load and why, and makes the last-known-good (--to lkg, the default), a
named content version (--to VERSION, with --channel) or nothing (--to none)
active. The content it moves away from becomes BAD and is quarantined.

It works when state.db is missing or corrupt, and when both copies of the boot
record are corrupt: then it rebuilds the record from the slots whose manifests
verify (lkg: the newest version the history saw marked good, or without
history the older one). On a read-only disk, or with --dry-run, it says what
it would do and changes nothing.

Exit 0 recovered (or nothing to do, or a dry run), 1 no such target, 2 usage
or I/O error.

Examples:
  ringfence recover --root /mnt/host/var/lib/ringfence --dry-run
  ringfence recover --root /mnt/host/var/lib/ringfence --channel 291 --to 1001`

func runRecover(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("recover", "recover [--root DIR] [--channel N] [--to lkg|none|VERSION] [--dry-run] [--json]", recoverHelp, stdout, stderr)
	hf := addHostFlags(fs)
	to := fs.String("to", installer.TargetLastGood, "what to make active: lkg (last-known-good), none, or a content version number")
	dry := fs.Bool("dry-run", false, "show what would change, change nothing")
	if rest, code, ok := parseArgs(fs, args, stdout); !ok {
		return code
	} else if len(rest) > 0 {
		fmt.Fprintf(stderr, "ringfence recover: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	if _, err := os.Stat(*hf.root); err != nil {
		fmt.Fprintf(stderr, "ringfence recover: %v; mount the host's disk and pass its Ringfence directory as --root\n", err)
		return exitUsage
	}
	root, chs, ok := openChannels("recover", hf, installer.Options{ReadOnly: *dry}, stderr)
	if !ok {
		return exitUsage
	}
	defer root.Close()
	if len(chs) == 0 {
		if *to == installer.TargetLastGood || *to == installer.TargetNone {
			fmt.Fprintf(stdout, "the root %s holds no channel yet: nothing to recover\n", root.Root())
			return exitOK
		}
		fmt.Fprintf(stderr, "ringfence recover: the root holds no channel yet: no version %s to go to ('ringfence status' shows the channels)\n", *to)
		return exitRejected
	}
	if len(chs) > 1 && *to != installer.TargetLastGood && *to != installer.TargetNone {
		fmt.Fprintf(stderr, "ringfence recover: --to %s names a version of one channel: pass --channel too (the root holds %s)\n", *to, listChannels(root.Channels()))
		return exitUsage
	}
	code := exitOK
	for _, in := range chs {
		if len(chs) > 1 && !*hf.asJSON {
			fmt.Fprintf(stdout, "channel %d:\n", in.Ch())
		}
		if c := recoverOne(in, *to, *dry, hf, stdout, stderr); c > code {
			code = c
		}
	}
	return code
}

// recoverOne recovers one channel and prints what it did.
func recoverOne(in *installer.Installer, to string, dry bool, hf hostFlags, stdout, stderr io.Writer) int {
	rep, err := in.Recover(to, dry)
	if *hf.asJSON {
		out := struct {
			installer.RecoverReport
			Error string `json:"error,omitempty"`
		}{RecoverReport: rep}
		if err != nil {
			out.Error = err.Error()
		}
		printJSON(stdout, out)
	} else {
		fmt.Fprintf(stdout, "before: the next boot would %s\n", describeNext(rep.Before))
		for _, p := range rep.Plan {
			fmt.Fprintf(stdout, "  %s\n", p)
		}
		if err == nil {
			verb, note := "will", ""
			switch {
			case rep.ReadOnly:
				verb, note = "would", "read-only disk: nothing was changed"
			case rep.DryRun:
				verb, note = "would", "dry run: nothing was changed"
			case !rep.Changed:
				verb = "will still"
			}
			fmt.Fprintf(stdout, "after:  the next boot %s %s\n", verb, describeNext(rep.After))
			if note != "" {
				fmt.Fprintln(stdout, note)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "ringfence recover: channel %d: %v\n", in.Ch(), err)
		if errors.Is(err, installer.ErrNoTarget) {
			return exitRejected
		}
		return exitUsage
	}
	return exitOK
}

// referencePreflight is the preflight command of the built-in reference
// sensor: this binary's 'sensor preflight'.
func referencePreflight(capsPath string) ([]string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own binary for the reference preflight: %w", err)
	}
	return sensor.PreflightCommand(self, capsPath), nil
}

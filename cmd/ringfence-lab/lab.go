package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/balancer"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/validator"
	"github.com/ringfence/ringfence/wire"
)

// Options run a lab.
type Options struct {
	Config Config
	// Bin holds ringfence, ringfenced and ringfence-server; Testdata the
	// repository's testdata (channels/, capabilities/).
	Bin, Testdata string
	// Work is the lab's directory: the repository, keys, the server's state
	// and log, one directory per host. It must be empty or not exist.
	Work string
	// Keep leaves the server and the fleet running at the end until ctx
	// ends (Ctrl-C); Kept is called first with the report, whose
	// Dashboard is then set.
	Keep bool
	Kept func(Report)
	// Out gets the timeline.
	Out io.Writer
	// DB, a postgres:// URL of a new, empty database, runs the server as
	// Replicas replicas of `ringfence-server serve --db DB` (at least 1),
	// behind haproxy (internal/balancer) when there are several. Empty:
	// one server with its state in its state directory.
	DB       string
	Replicas int
}

// MaxReplicas bounds --replicas.
const MaxReplicas = 5

// labLeaseTTL is the replicas' --lease-ttl: a leader that died is
// replaced within seconds.
const labLeaseTTL = 3 * time.Second

// Timing bounds of the lab's own waits.
const (
	serverStartTimeout = 20 * time.Second
	fleetStartTimeout  = 60 * time.Second
	stopGrace          = 15 * time.Second
	tick               = 500 * time.Millisecond
	serverPoll         = 50 * time.Millisecond // while the server starts
	maxRolloutsSize    = 32 << 20              // GET /v1/rollouts
)

// lab is one run: its processes, its hosts and what they did.
type lab struct {
	opts   Options
	cfg    Config
	tl     *timeline
	ps     procs
	repo   string
	keys   string
	state  string
	url    string // the server's, or the balancer's in front of the replicas
	token  string
	client *server.Client
	lb     *balancer.Balancer // in front of the replicas, when several
	lbLog  *os.File
	hosts  []*host
	byID   map[string]*host
	files  map[string]content // the testdata files, by name (all of the first channel)
	// again and second are scenario 5's files, made by the lab: cf291
	// again on the first channel at a new version, and the second
	// channel's first content.
	again, second content
	current       int // the scenario whose events are being read
}

// content is a channel file the lab publishes: one of testdata/channels,
// or one the lab made from one (scenario 5).
type content struct {
	name             string // the testdata file it is, or was made from
	channel, version uint32
	path             string
	made             bool // re-encoded by the lab from the testdata file name
}

// String names the content for the timeline: "cf291-shape", or what it was
// made from ("good-ipc-1001 re-encoded").
func (c content) String() string {
	if c.made {
		return c.name + " re-encoded"
	}
	return c.name
}

// madeDir is the work directory's folder of the files the lab makes.
const madeDir = "content"

// host is one ringfenced of the fleet.
type host struct {
	HostSpec
	dir, root, config string
	log               string // its daemon.log: for people; the lab reads the journal
	id                string
	proc              *proc
	journal           *journalFollower
	events            []scenarioEvent
	shown             map[string]int // failure lines printed, per scenario and kind
}

type scenarioEvent struct {
	scenario int
	hostEvent
}

// The preflight a host runs, as the timeline and the report name it.
const (
	// preflightReference is `ringfenced sensor preflight --capabilities
	// <the installed manifest>`: the reference interpreter, built from what
	// the manifest says (7.12 on every lab host).
	preflightReference = "reference preflight"
	// preflightAgent is the installed agent's own preflight mode
	// (`ringfenced agent --capabilities <its build's manifest> --preflight`):
	// the interpreter that will load the content.
	preflightAgent = "preflight by the installed agent"
)

// preflight names the preflight h runs.
func (h *host) preflight() string {
	if h.AgentPreflight {
		return preflightAgent
	}
	return preflightReference
}

// label names the host with its role and, for a legacy host, the
// preflight it runs: "h01 (canary, 7.11 agent, reference preflight)".
func (h *host) label() string {
	var r []string
	if h.Canary {
		r = append(r, "canary")
	}
	if h.Legacy {
		r = append(r, "7.11 agent", h.preflight())
	}
	if len(r) == 0 {
		return h.Name
	}
	return h.Name + " (" + strings.Join(r, ", ") + ")"
}

func (h *host) status() (daemon.Status, error) { return daemon.ReadStatus(h.root) }

// record reads channel ch's boot record: what the daemon and the agent's
// loader write (<root>/channels/<N>/bootrecord, docs/boot-record.md), the
// state of each channel apart. A channel that never had content has none
// yet: the zero record, nothing active.
func (h *host) record(ch uint32) (bootguard.Record, error) {
	rec, err := bootguard.Read(installer.RecordPathOf(h.root, ch))
	if errors.Is(err, fs.ErrNotExist) {
		return bootguard.Record{}, nil
	}
	return rec, err
}

// active is what h runs on channel ch: the active slot's entry, and false
// when the channel has no content.
func (h *host) active(ch uint32) (bootguard.Entry, bool, error) {
	rec, err := h.record(ch)
	if err != nil || rec.Active == bootguard.SlotNone {
		return bootguard.Entry{}, false, err
	}
	return *rec.Entry(rec.Active), true, nil
}

// runsGood reports whether h runs version v of channel ch as GOOD, its
// agent up.
func (h *host) runsGood(ch, v uint32) bool {
	e, ok, err := h.active(ch)
	if err != nil || !ok || e.Version != v || e.State != bootguard.StateGood {
		return false
	}
	st, err := h.status()
	return err == nil && st.Agent == daemon.AgentRunning
}

// did reports whether h's journal, in the scenario numbered seq, has an
// event of kind for version v of channel ch.
func (h *host) did(seq int, kind eventKind, ch, v uint32) bool {
	return slices.ContainsFunc(h.events, func(ev scenarioEvent) bool {
		return ev.scenario == seq && ev.Kind == kind && ev.Channel == ch && ev.Version == v
	})
}

// describe says what h runs on each channel and how its agent is:
// "channel 291 version 1004 (GOOD); channel 292: no content; agent running".
func (h *host) describe(chs []uint32) string {
	var parts []string
	for _, ch := range chs {
		e, ok, err := h.active(ch)
		switch {
		case err != nil:
			parts = append(parts, fmt.Sprintf("channel %d: %v", ch, err))
		case !ok:
			parts = append(parts, fmt.Sprintf("channel %d: no content", ch))
		default:
			parts = append(parts, fmt.Sprintf("channel %d version %d (%v)", ch, e.Version, e.State))
		}
	}
	agent := "no status"
	if st, err := h.status(); err == nil {
		agent = "agent " + st.Agent.String()
	}
	return strings.Join(append(parts, agent), "; ")
}

// Run runs the lab: the publisher, the server, the fleet, the scenarios.
// Every process it starts is stopped before it returns, on every path.
func Run(ctx context.Context, opts Options) (rep Report, err error) {
	start := time.Now()
	l := &lab{opts: opts, cfg: opts.Config, tl: &timeline{w: opts.Out, start: start, clock: clock.System{}},
		byID: map[string]*host{}, files: map[string]content{}}
	rep.Hosts = l.cfg.Hosts
	if opts.DB != "" {
		rep.Replicas = max(opts.Replicas, 1)
		rep.Servers = fmt.Sprintf("%d ringfence-server replicas on one PostgreSQL database", rep.Replicas)
		if rep.Replicas == 1 {
			rep.Servers = "1 ringfence-server replica on a PostgreSQL database"
		} else {
			rep.Servers += ", behind haproxy"
		}
	}
	defer func() {
		if killed := l.ps.stopAll(stopGrace); len(killed) > 0 {
			l.tl.printf("killed after %v without stopping: %s", stopGrace, strings.Join(killed, ", "))
		}
		if l.lb != nil {
			if err := l.lb.Stop(); err != nil {
				l.tl.printf("haproxy: %v", err)
			}
		}
		if l.lbLog != nil {
			l.lbLog.Close()
		}
		rep.Seconds = time.Since(start).Seconds()
	}()
	if err := l.setup(ctx); err != nil {
		return rep, err
	}
	for _, h := range l.hosts {
		if h.Canary {
			rep.Canaries = append(rep.Canaries, h.Name)
		}
		if h.Legacy {
			rep.LegacyHosts = append(rep.LegacyHosts, h.Name)
		}
		if h.AgentPreflight {
			rep.AgentPreflightHosts = append(rep.AgentPreflightHosts, h.Name)
		}
	}
	rep.Channels = l.cfg.Channels
	rep.GoodVersion = l.lastGood()
	// What every host must run at the end, per channel: the first
	// channel's last good version, and the second channel's content of
	// scenario 5.
	rep.GoodVersions = map[uint32]uint32{l.first(): rep.GoodVersion, l.second.channel: l.second.version}
	one := func(t *track) func() ([]Row, error) { return func() ([]Row, error) { return l.rollout(ctx, t) } }
	scenarios := []func() ([]Row, error){}
	good := l.cfg.Content.Good
	for i, name := range good {
		id := "1"
		if len(good) > 1 {
			id += string(rune('a' + i))
		}
		c := l.files[name]
		label := fmt.Sprintf("good %d", c.version)
		if i == 0 {
			label += " (first content)"
		}
		scenarios = append(scenarios, one(&track{id: id, label: label, c: c, want: expectComplete}))
	}
	bypassed, cf291, costly := l.files[l.cfg.Content.Bypassed], l.files[l.cfg.Content.CF291], l.files[l.cfg.Content.Costly]
	scenarios = append(scenarios,
		func() ([]Row, error) { row, err := l.publisherRefuses(ctx, "2"); return []Row{row}, err },
		one(&track{id: "3", label: fmt.Sprintf("checks bypassed %d", bypassed.version), c: bypassed, want: expectRejected}),
		// Scenario 4 holds its rollback after the halt until every legacy
		// canary has shown what it does with the version (hold).
		one(&track{id: "4", label: fmt.Sprintf("cf291 on 7.11 agents %d", cf291.version), c: cf291, want: expectCrash, hold: true}),
		// Scenario 5: both channels at once, on the same hosts.
		func() ([]Row, error) {
			return l.rollout(ctx,
				&track{id: "5a", label: fmt.Sprintf("two at once: cf291 again %d", l.again.version), c: l.again, want: expectCrash},
				&track{id: "5b", label: fmt.Sprintf("two at once: good %d (first content)", l.second.version), c: l.second, want: expectComplete})
		},
		// Scenario 6: content every check passes that costs the 7.11
		// agents dear; only the server's health test can stop it.
		one(&track{id: "6", label: fmt.Sprintf("costly on 7.11 agents %d", costly.version), c: costly, want: expectHealthHalt}))
	for _, sc := range scenarios {
		l.current++
		rows, err := sc()
		rep.Scenarios = append(rep.Scenarios, rows...)
		if err != nil {
			return rep, err
		}
	}

	rep.HostsWithoutGoodContent = l.withoutGood(rep.GoodVersions)
	for _, r := range rep.Scenarios {
		for _, p := range r.Problems {
			rep.Failures = append(rep.Failures, fmt.Sprintf("scenario %s: %s", r.ID, p))
		}
	}
	rep.OK = len(rep.HostsWithoutGoodContent) == 0 && len(rep.Failures) == 0
	if opts.Keep {
		rep.Dashboard = l.url + "/#token=" + l.token
		rep.Work = l.opts.Work
		rep.Seconds = time.Since(start).Seconds()
		if opts.Kept != nil {
			opts.Kept(rep)
		}
		<-ctx.Done()
	}
	return rep, nil
}

// withoutGood names every host that does not run, on every channel, the
// version good gives it as GOOD with its agent up, with what it runs.
func (l *lab) withoutGood(good map[uint32]uint32) []string {
	out := []string{}
	for _, h := range l.hosts {
		ok := true
		for _, ch := range l.cfg.Channels {
			ok = ok && h.runsGood(ch, good[ch])
		}
		if !ok {
			out = append(out, h.Name+": "+h.describe(l.cfg.Channels))
		}
	}
	return out
}

// channelList says "291 and 292".
func channelList(chs []uint32) string {
	var parts []string
	for _, ch := range chs {
		parts = append(parts, fmt.Sprint(ch))
	}
	if len(parts) < 2 {
		return strings.Join(parts, "")
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// first is the channel of scenarios 1-4 and 6 (the content files' channel).
func (l *lab) first() uint32 { return l.cfg.Channels[0] }

func (l *lab) bin(name string) string { return filepath.Join(l.opts.Bin, name) }

func (l *lab) capabilities(sensor string) string {
	return filepath.Join(l.opts.Testdata, "capabilities", "sensor-"+sensor+".json")
}

func (l *lab) channelFile(name string) string {
	return filepath.Join(l.opts.Testdata, "channels", name+".rfch")
}

// setup checks the inputs, makes and fills the repository, starts the
// server and the fleet, and waits until every host runs and reported.
func (l *lab) setup(ctx context.Context) error {
	for _, b := range []string{"ringfence", "ringfenced", "ringfence-server"} {
		if _, err := os.Stat(l.bin(b)); err != nil {
			return fmt.Errorf("%s: %w (run 'make build', or give --bin DIR)", b, err)
		}
	}
	if l.opts.DB != "" && l.replicas() > 1 {
		if _, err := balancer.Find(); err != nil {
			return err
		}
	}
	for _, s := range []string{"7.11", "7.12"} {
		if _, err := os.Stat(l.capabilities(s)); err != nil {
			return fmt.Errorf("capability manifest: %w (give --testdata DIR)", err)
		}
	}
	cc := l.cfg.Content
	names := append(slices.Clone(cc.Good), cc.Bypassed, cc.CF291, cc.Second, cc.Costly)
	for _, name := range names {
		path := l.channelFile(name)
		f, err := readChannelFile(path)
		if err != nil {
			return fmt.Errorf("content %s: %w (give --testdata DIR)", name, err)
		}
		if f.Channel != l.first() {
			return fmt.Errorf("content %s is channel %d; the lab runs scenarios 1-4 and 6 on channel %d (the first of channels)", name, f.Channel, l.first())
		}
		l.files[name] = content{name: name, channel: f.Channel, version: f.ContentVersion, path: path}
	}
	// Hosts refuse content not newer than what they run: the good versions
	// must rise, and the bad ones must be newer than the last good one, or
	// the scenarios would show that refusal instead.
	last := uint32(0)
	for _, name := range cc.Good {
		if v := l.files[name].version; v <= last {
			return fmt.Errorf("content.good: %s (version %d) is not newer than the one before it", name, v)
		} else {
			last = v
		}
	}
	for _, name := range []string{cc.Bypassed, cc.CF291} {
		if v := l.files[name].version; v <= last {
			return fmt.Errorf("content: %s (version %d) is not newer than the last good version %d", name, v, last)
		}
	}
	if err := emptyDir(l.opts.Work); err != nil {
		return err
	}
	// Scenario 5's files. cf291 goes out again on the first channel as a
	// version no scenario before it used (scenario 4's is denied there
	// since its rollback); the second channel's first content is a good
	// file made over for it.
	top := uint32(0)
	for _, name := range append(slices.Clone(cc.Good), cc.Bypassed, cc.CF291, cc.Second) {
		top = max(top, l.files[name].version)
	}
	// Scenario 6 runs last, after every other version of the first
	// channel was published and two of them denied: its own must be newer
	// than all of them, scenario 5's included.
	if v := l.files[cc.Costly].version; v <= top+1 {
		return fmt.Errorf("content.costly: %s (version %d) is not newer than every version scenarios 1-5 publish on channel %d (up to %d)", cc.Costly, v, l.first(), top+1)
	}
	var err error
	if l.again, err = l.remake(l.files[cc.CF291], l.first(), top+1); err != nil {
		return err
	}
	if l.second, err = l.remake(l.files[cc.Second], l.cfg.Channels[1], cc.SecondVersion); err != nil {
		return err
	}
	l.tl.printf("lab: %d hosts on loopback; work directory %s", l.cfg.Hosts, l.opts.Work)
	l.repo, l.keys, l.state = filepath.Join(l.opts.Work, "repo"), filepath.Join(l.opts.Work, "keys"), filepath.Join(l.opts.Work, "state")
	if err := l.publish(ctx); err != nil {
		return err
	}
	if err := l.startServer(ctx); err != nil {
		return err
	}
	return l.startFleet(ctx)
}

func readChannelFile(path string) (*validator.ChannelFile, error) {
	data, err := validator.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return validator.Parse(data)
}

// remake writes c re-encoded as version v of channel ch into the work
// directory's content/ (the vendor's pipeline makes a channel's files the
// same way: same templates and instances, its own channel and version).
func (l *lab) remake(c content, ch, v uint32) (content, error) {
	f, err := readChannelFile(c.path)
	if err != nil {
		return content{}, fmt.Errorf("content %s: %w", c.name, err)
	}
	f.Channel, f.ContentVersion = ch, v
	data, err := validator.Encode(f)
	if err != nil {
		return content{}, fmt.Errorf("re-encode %s as channel %d version %d: %w", c.name, ch, v, err)
	}
	dir := filepath.Join(l.opts.Work, madeDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return content{}, err
	}
	path := filepath.Join(dir, fmt.Sprintf("%s.%d.%d.rfch", c.name, ch, v))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return content{}, err
	}
	return content{name: c.name, channel: ch, version: v, path: path, made: true}, nil
}

// emptyDir makes dir, or checks that it is empty: the lab never mixes its
// repository or hosts with an earlier run's.
func emptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("work directory %s is not empty; give a new or empty one", dir)
	}
	return nil
}

// publish is the vendor's pipeline: a new repository, the good content
// checked against sensor 7.12 (what every host's manifest says), the two
// bad files the scenarios roll out, scenario 5's files, and scenario 6's
// content, checked like the good content (it passes). Everything is
// published before the server starts: serve reads the repository's signing
// state once, at start, and signs plans (and snapshot and timestamp) from
// it, so a publish beside a running server would fork the snapshot and
// timestamp versions.
func (l *lab) publish(ctx context.Context) error {
	logPath := filepath.Join(l.opts.Work, "publisher.log")
	srv := l.bin("ringfence-server")
	if out, err := runTool(ctx, "", logPath, srv, "repo", "init", "--repo", l.repo, "--keys", l.keys); err != nil {
		return fmt.Errorf("repo init: %v: %s", err, strings.TrimSpace(out))
	}
	// publish takes the channel from --channel and checks that the file
	// carries it.
	pub := func(c content, extra ...string) error {
		args := append([]string{"publish", "--repo", l.repo, "--keys", l.keys, "--channel", fmt.Sprint(c.channel)}, extra...)
		out, err := runTool(ctx, "", logPath, srv, append(args, c.path)...)
		if err != nil {
			return fmt.Errorf("publish %s (channel %d version %d): %v: %s", c, c.channel, c.version, err, strings.TrimSpace(out))
		}
		return nil
	}
	checked := []string{"--capabilities", l.capabilities("7.12")}
	var good []string
	for _, name := range l.cfg.Content.Good {
		if err := pub(l.files[name], checked...); err != nil {
			return err
		}
		good = append(good, fmt.Sprint(l.files[name].version))
	}
	l.tl.printf("publisher: new TUF repository; published %s on channel %d (validated and preflighted against sensor 7.12, what every host's manifest says)",
		strings.Join(good, ", "), l.first())
	bypassed, cf291 := l.files[l.cfg.Content.Bypassed], l.files[l.cfg.Content.CF291]
	if err := pub(bypassed, "--skip-static", "--skip-preflight"); err != nil {
		return err
	}
	l.tl.printf("publisher: published %d (%s) with --skip-static --skip-preflight: the 2024 pipeline, for scenario 3", bypassed.version, bypassed)
	if err := pub(cf291, checked...); err != nil {
		return err
	}
	l.tl.printf("publisher: published %d (%s), validated and preflighted against sensor 7.12, for scenario 4", cf291.version, cf291)
	for _, c := range []content{l.again, l.second} {
		if err := pub(c, checked...); err != nil {
			return err
		}
	}
	l.tl.printf("publisher: published %d on channel %d (%s) and %d on channel %d (%s), validated and preflighted against sensor 7.12, for scenario 5",
		l.again.version, l.again.channel, l.again, l.second.version, l.second.channel, l.second)
	costly := l.files[l.cfg.Content.Costly]
	if err := pub(costly, checked...); err != nil {
		return err
	}
	l.tl.printf("publisher: published %d (%s), validated and preflighted against sensor 7.12, for scenario 6", costly.version, costly)
	return nil
}

// startServer starts ringfence-server serve on a free loopback port and
// reads its URL and its operator token from its state directory (serve.url
// appears once it listens). With a database it starts the replicas instead.
func (l *lab) startServer(ctx context.Context) error {
	if l.opts.DB != "" {
		return l.startReplicas(ctx)
	}
	cmd := exec.Command(l.bin("ringfence-server"), "serve", "--repo", l.repo, "--keys", l.keys, "--state", l.state,
		"--addr", "127.0.0.1:0", "--eval-interval", l.cfg.Server.EvalInterval.String(), "--canary-tags", CanaryTag)
	logPath := filepath.Join(l.opts.Work, "server.log")
	p, err := l.ps.start("ringfence-server", cmd, logPath)
	if err != nil {
		return err
	}
	if l.url, err = waitServe(ctx, p, l.state, logPath); err != nil {
		return err
	}
	tok, err := os.ReadFile(filepath.Join(l.state, server.TokenFile))
	if err != nil {
		return fmt.Errorf("operator token: %w", err)
	}
	l.setClient(strings.TrimSpace(string(tok)))
	l.tl.printf("server: ringfence-server serve on %s (gates evaluated every %v; log in server.log)", l.url, l.cfg.Server.EvalInterval)
	return nil
}

func (l *lab) setClient(token string) {
	l.token = token
	l.client = &server.Client{URL: l.url, Token: l.token, HTTP: &http.Client{Timeout: 10 * time.Second}}
}

// replicas is how many replicas run with a database.
func (l *lab) replicas() int { return max(l.opts.Replicas, 1) }

// waitServe waits until the serve process p wrote its URL into state's
// serve.url, and returns it.
func waitServe(ctx context.Context, p *proc, state, logPath string) (string, error) {
	deadline := time.Now().Add(serverStartTimeout)
	for {
		if u, err := os.ReadFile(filepath.Join(state, server.AddrFile)); err == nil && len(bytes.TrimSpace(u)) > 0 {
			return strings.TrimSpace(string(u)), nil
		}
		if p.exited() {
			return "", fmt.Errorf("%s serve exited (%v); see %s", p.name, p.err, logPath)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s serve wrote no %s in %v; see %s", p.name, server.AddrFile, serverStartTimeout, logPath)
		}
		if err := sleep(ctx, serverPoll); err != nil {
			return "", err
		}
	}
}

// startReplicas starts the replicas on the database: each its own state
// directory (state, state-2, ...) holding the same operator token, made
// before any starts, and its own repository directory: the first the
// lab's repository, with which it seeds the database, the others empty
// (they pull it from the database). Logs server-1.log, server-2.log, ...
// With several, haproxy goes in front (haproxy.log) and its URL is the
// server's for the hosts and the lab; the operator commands given --state
// reach the first replica (its serve.url), which passes the API to the
// leader.
func (l *lab) startReplicas(ctx context.Context) error {
	n := l.replicas()
	tok, err := server.LoadOrCreateToken(l.state)
	if err != nil {
		return err
	}
	// The database must be new: a replica on one that already holds a
	// repository pulls that one over the lab's.
	rootPath := filepath.Join(l.repo, "metadata", "1.root.json")
	root, err := os.ReadFile(rootPath)
	if err != nil {
		return fmt.Errorf("trusted root: %w", err)
	}
	var urls []string
	start := func(i int) (*proc, string, string, error) {
		state, repo := l.state, l.repo
		if i > 1 {
			state, repo = filepath.Join(l.opts.Work, fmt.Sprintf("state-%d", i)), filepath.Join(l.opts.Work, fmt.Sprintf("repo-%d", i))
			if err := os.MkdirAll(repo, 0o755); err != nil {
				return nil, "", "", err
			}
			if err := os.MkdirAll(state, 0o700); err != nil {
				return nil, "", "", err
			}
			if err := os.WriteFile(filepath.Join(state, server.TokenFile), []byte(tok+"\n"), 0o600); err != nil {
				return nil, "", "", err
			}
		}
		cmd := exec.Command(l.bin("ringfence-server"), "serve", "--repo", repo, "--keys", l.keys, "--state", state,
			"--addr", "127.0.0.1:0", "--eval-interval", l.cfg.Server.EvalInterval.String(), "--canary-tags", CanaryTag,
			"--db", l.opts.DB, "--lease-ttl", labLeaseTTL.String())
		logPath := filepath.Join(l.opts.Work, fmt.Sprintf("server-%d.log", i))
		p, err := l.ps.start(fmt.Sprintf("ringfence-server %d", i), cmd, logPath)
		return p, state, logPath, err
	}
	// The first seeds the database before the others start.
	p, state, logPath, err := start(1)
	if err != nil {
		return err
	}
	u, err := waitServe(ctx, p, state, logPath)
	if err != nil {
		return err
	}
	urls = append(urls, u)
	if now, err := os.ReadFile(rootPath); err != nil || !bytes.Equal(now, root) {
		return fmt.Errorf("the database already held a repository (the first replica pulled it over the lab's): give --db a new, empty database")
	}
	type started struct {
		p              *proc
		state, logPath string
	}
	var rest []started
	for i := 2; i <= n; i++ {
		p, state, logPath, err := start(i)
		if err != nil {
			return err
		}
		rest = append(rest, started{p, state, logPath})
	}
	for _, r := range rest {
		u, err := waitServe(ctx, r.p, r.state, r.logPath)
		if err != nil {
			return err
		}
		urls = append(urls, u)
	}
	l.url = urls[0]
	if n > 1 {
		bin, err := balancer.Find()
		if err != nil {
			return err
		}
		if l.lbLog, err = os.OpenFile(filepath.Join(l.opts.Work, "haproxy.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return err
		}
		sctx, cancel := context.WithTimeout(ctx, serverStartTimeout)
		l.lb, err = balancer.Start(sctx, bin, urls, filepath.Join(l.opts.Work, "haproxy"), l.lbLog)
		cancel()
		if err != nil {
			return err
		}
		l.url = l.lb.URL()
	}
	l.setClient(tok)
	if n == 1 {
		l.tl.printf("server: one ringfence-server serve replica on PostgreSQL at %s, the repository and state in the database (gates evaluated every %v; log in server-1.log)",
			l.url, l.cfg.Server.EvalInterval)
		return nil
	}
	l.tl.printf("server: %d ringfence-server serve replicas on one PostgreSQL database (%s), one leading by a lease (--lease-ttl %v), gates evaluated every %v; logs server-1.log ... server-%d.log",
		n, strings.Join(urls, " "), labLeaseTTL, l.cfg.Server.EvalInterval, n)
	l.tl.printf("server: haproxy in front of them on %s, round robin, each replica health-checked (haproxy.log): the hosts' repository and telemetry endpoint and the lab's API client", l.url)
	return nil
}

// hostConfig is a host's ringfenced.toml (docs/ringfenced.md).
type hostConfig struct {
	Root         string        `toml:"root"`
	Repository   string        `toml:"repository"`
	TrustedRoot  string        `toml:"trusted_root"`
	Channels     []uint32      `toml:"channels"`
	PollInterval string        `toml:"poll_interval"`
	PollJitter   string        `toml:"poll_jitter"`
	HealthWindow string        `toml:"health_window"`
	Tags         []string      `toml:"tags,omitempty"`
	Agent        hostAgent     `toml:"agent"`
	Telemetry    hostTelemetry `toml:"telemetry"`
}

type hostAgent struct {
	Capabilities     string   `toml:"capabilities"`
	Command          []string `toml:"command"`
	PreflightCommand []string `toml:"preflight_command"`
	RestartDelay     string   `toml:"restart_delay"`
}

type hostTelemetry struct {
	Endpoint           string `toml:"endpoint"`
	Interval           string `toml:"interval"`
	EnrolmentTokenFile string `toml:"enrolment_token_file"`
}

// renderHostConfig writes h's configuration. Every host's manifest (what
// validation uses) says 7.12; a legacy host's agent is a 7.11 build. Most
// hosts preflight with the reference harness against that manifest; an
// AgentPreflight host with its installed agent (the agent's command line
// plus --preflight; the daemon appends the file's path).
func (l *lab) renderHostConfig(h *host, trusted, tokenFile string) ([]byte, error) {
	agentCaps := l.capabilities("7.12")
	header := "# ringfence-lab host " + h.Name + ": its manifest and its agent agree (sensor 7.12).\n"
	if h.Legacy {
		agentCaps = l.capabilities("7.11")
		header = "# ringfence-lab host " + h.Name + ": LEGACY. The installed manifest says sensor 7.12, but the agent\n" +
			"# is a 7.11 build whose manifest was never updated (the packaging bug).\n"
	}
	agent := []string{l.bin("ringfenced"), "agent", "--capabilities", agentCaps}
	preflight := []string{l.bin("ringfenced"), "sensor", "preflight", "--capabilities", l.capabilities("7.12")}
	if h.AgentPreflight {
		preflight = append(slices.Clone(agent), "--preflight")
		header += "# Its preflight runs the installed agent itself, whatever the manifest says.\n"
	}
	c := hostConfig{
		Root: h.root, Repository: l.url, TrustedRoot: trusted, Channels: l.cfg.Channels,
		PollInterval: l.cfg.Host.PollInterval.String(), PollJitter: l.cfg.Host.PollJitter.String(),
		HealthWindow: l.cfg.Host.HealthWindow.String(),
		Agent: hostAgent{
			Capabilities:     l.capabilities("7.12"),
			Command:          agent,
			PreflightCommand: preflight,
			RestartDelay:     l.cfg.Host.RestartDelay.String(),
		},
		Telemetry: hostTelemetry{Endpoint: l.url, Interval: l.cfg.Host.TelemetryInterval.String(), EnrolmentTokenFile: tokenFile},
	}
	var b bytes.Buffer
	b.WriteString(header)
	if err := toml.NewEncoder(&b).Encode(c); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// startFleet writes every host's configuration, starts the daemons, and
// waits until each one's agent runs and the server has heard from all.
func (l *lab) startFleet(ctx context.Context) error {
	trusted := filepath.Join(l.opts.Work, "root.json")
	root, err := os.ReadFile(filepath.Join(l.repo, "metadata", "1.root.json"))
	if err != nil {
		return fmt.Errorf("trusted root: %w", err)
	}
	if err := os.WriteFile(trusted, root, 0o644); err != nil {
		return err
	}
	// Every host enrols as a vendor's would: with an enrolment token the
	// operator issued. The canaries' token puts them in the canary group
	// (the server's record: a host's own claim of a tag counts for
	// nothing); each token admits exactly the hosts it was made for.
	tokens, err := l.enrolmentTokens(ctx)
	if err != nil {
		return err
	}
	for _, spec := range l.cfg.Fleet() {
		dir := filepath.Join(l.opts.Work, "hosts", spec.Name)
		h := &host{HostSpec: spec, dir: dir, root: filepath.Join(dir, "root"), config: filepath.Join(dir, "ringfenced.toml"),
			log: filepath.Join(dir, "daemon.log"), shown: map[string]int{}}
		h.journal = newJournalFollower(h.root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		tokenFile := filepath.Join(dir, "enrolment.token")
		if err := os.WriteFile(tokenFile, []byte(tokens[h.Canary]+"\n"), 0o600); err != nil {
			return err
		}
		b, err := l.renderHostConfig(h, trusted, tokenFile)
		if err != nil {
			return err
		}
		if err := os.WriteFile(h.config, b, 0o644); err != nil {
			return err
		}
		l.hosts = append(l.hosts, h)
	}
	for _, h := range l.hosts {
		cmd := exec.Command(l.bin("ringfenced"), "run", "--config", h.config)
		if h.proc, err = l.ps.start(daemonPrefix+h.Name, cmd, h.log); err != nil {
			return err
		}
	}
	var canaries, legacy, byAgent []string
	for _, h := range l.hosts {
		if h.Canary {
			canaries = append(canaries, h.Name)
		}
		if h.Legacy {
			legacy = append(legacy, h.Name)
		}
		if h.AgentPreflight {
			byAgent = append(byAgent, h.Name)
		}
	}
	l.tl.printf("fleet: %d ringfenced started, each with its own root, host key and reference sensor (logs in hosts/*/daemon.log)",
		len(l.hosts))
	l.tl.printf("fleet: canaries %s; legacy 7.11 agents under a 7.12 manifest: %s", strings.Join(canaries, " "), strings.Join(legacy, " "))
	l.tl.printf("fleet: preflight by the installed agent on %s; every other host runs the reference preflight against its 7.12 manifest",
		strings.Join(byAgent, " "))
	deadline := time.Now().Add(fleetStartTimeout)
	for {
		up := 0
		for _, h := range l.hosts {
			if h.proc.exited() {
				return fmt.Errorf("ringfenced %s exited (%v); see %s", h.Name, h.proc.err, h.log)
			}
			// Up: its agent runs and the server took its telemetry since it
			// admitted it. A host admitted by a replica's leader was told
			// to send again shortly (its first batch waited in the
			// database's inbox): until it does, the leader has not heard
			// from it since, and a rollout started meanwhile would not
			// count it in its stages.
			if st, err := h.status(); err == nil && st.HostID != "" && st.Agent == daemon.AgentRunning && st.Admission == wire.AdmissionAccepted {
				if h.id == "" {
					h.id = st.HostID
					l.byID[h.id] = h
				}
				up++
			}
		}
		known, err := l.knownHosts(ctx)
		if up == len(l.hosts) && err == nil && known >= len(l.hosts) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the fleet did not come up in %v: %d of %d agents running, the server knows %d hosts (%v)", fleetStartTimeout, up, len(l.hosts), known, err)
		}
		if err := sleep(ctx, tick); err != nil {
			return err
		}
	}
	if err := l.writeHostList(); err != nil {
		return err
	}
	l.tl.printf("fleet: all %d agents running, each host following channels %s (no content yet); all %d hosts admitted by their enrolment tokens",
		len(l.hosts), channelList(l.cfg.Channels), len(l.hosts))
	return nil
}

// enrolmentTokens issues the fleet's two enrolment tokens through the
// server's API: one for the canaries (tagged canary), one for the rest,
// each for exactly its hosts. By canary: the token.
func (l *lab) enrolmentTokens(ctx context.Context) (map[bool]string, error) {
	n := map[bool]int{}
	for _, spec := range l.cfg.Fleet() {
		n[spec.Canary]++
	}
	out := map[bool]string{}
	for _, canary := range []bool{true, false} {
		q := server.TokenRequest{Who: "ringfence-lab", TTL: "24h", MaxUses: n[canary], Fleet: "lab", Note: "the lab's fleet"}
		if canary {
			q.Tags, q.Note = []string{CanaryTag}, "the lab's canaries"
		}
		t, err := l.client.CreateToken(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("issue an enrolment token: %w", err)
		}
		out[canary] = t.Token
	}
	l.tl.printf("fleet: two enrolment tokens issued: %d canaries (tag %s), %d other hosts", n[true], CanaryTag, n[false])
	return out, nil
}

// writeHostList writes hosts.txt: each host's name, id and role.
func (l *lab) writeHostList() error {
	var b strings.Builder
	for _, h := range l.hosts {
		fmt.Fprintf(&b, "%s %s %s\n", h.Name, h.id, strings.TrimPrefix(h.label(), h.Name))
	}
	return os.WriteFile(filepath.Join(l.opts.Work, "hosts.txt"), []byte(b.String()), 0o644)
}

// knownHosts asks the server how many hosts have reported.
func (l *lab) knownHosts(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.url+"/v1/rollouts", nil)
	if err != nil {
		return 0, err
	}
	resp, err := l.client.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Hosts int `json:"hosts"`
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /v1/rollouts: %s", resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxRolloutsSize)).Decode(&out); err != nil {
		return 0, err
	}
	return out.Hosts, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

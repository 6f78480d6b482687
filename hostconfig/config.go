// Package hostconfig is ringfenced's local policy: a TOML file (docs/ringfenced.md
// lists every key) read once at start-up. Every mistake in it is reported
// then, with the key and what is allowed, never as a failure later: unknown
// keys (a typo is not silently ignored), bad durations, out-of-range numbers,
// missing files it names.
//
// TOML is read with github.com/BurntSushi/toml: a maintained, widely used
// parser that reports line numbers and which keys it did not decode, which is
// what lets a typo become an error.
package hostconfig

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/internal/capool"
	"github.com/ringfence/ringfence/internal/fileperm"
	"github.com/ringfence/ringfence/internal/vendorbuild"
	"github.com/ringfence/ringfence/wire"
)

// MaxSize bounds the configuration file.
const MaxSize = 1 << 20

// Ring policies: which rollout stages the host takes part in.
const (
	// RingsDefault: the host takes the version of the first stage it is in.
	RingsDefault = "default"
	// RingsEarly: the host also reports the tag "early", so a plan's canary
	// group can name early hosts by tag.
	RingsEarly = "early"
	// RingsLate: the host refuses early rings and takes only the version of
	// the plan's last (broadest) stage, once that stage includes it.
	RingsLate = "late"
)

// EarlyTag is the tag a host with rings = "early" reports.
const EarlyTag = "early"

// Config is the daemon's configuration.
type Config struct {
	// Root is the Ringfence root directory (boot record, slots, state.db).
	Root string `toml:"root"`
	// Repository is the TUF repository's base URL: metadata under
	// metadata/, targets under targets/. A vendor build's server URL
	// (vendorbuild.ServerURL) when the file leaves it out.
	Repository string `toml:"repository"`
	// TrustedRoot is the root.json installed with the agent. It is used
	// until a newer root is persisted under Root/tuf. Empty on a vendor
	// build means the root.json the binary embeds (TrustedRootJSON).
	TrustedRoot string `toml:"trusted_root"`
	// CAFile, when set, names PEM certificates (the server's CA, or its
	// self-signed certificate): every TLS connection the daemon makes, to
	// the repository and to the telemetry endpoint, trusts only these, not
	// the system's roots. Both URLs must then be https.
	CAFile string `toml:"ca_file"`
	// Channels are the content channels this host follows: one root, one
	// daemon, one host identity for all of them, each channel with its own
	// A/B slots and boot record under <root>/channels/<N>. Channel is the
	// older spelling for one channel; set one of the two.
	Channels []uint32 `toml:"channels"`
	Channel  uint32   `toml:"channel"`
	// PollInterval and PollJitter: a poll every PollInterval plus a random
	// 0..PollJitter, so that a fleet does not poll in step.
	PollInterval Duration `toml:"poll_interval"`
	PollJitter   Duration `toml:"poll_jitter"`
	// Pin holds the channel at one version, whatever the plan says; the
	// version must be published. Zero means no pin. With several channels,
	// Pins holds a version per channel ([pins] 291 = 1001).
	Pin  uint32            `toml:"pin"`
	Pins map[string]uint32 `toml:"pins"`
	// NMinus1 keeps the host one version behind the fleet: it installs the
	// newest published version below the one the plan's last stage names.
	NMinus1 bool `toml:"n_minus_1"`
	// Rings is RingsDefault, RingsEarly or RingsLate.
	Rings string `toml:"rings"`
	// Tags are reported to the rollout server and matched against a plan's
	// canary tags.
	Tags []string `toml:"tags"`
	// HealthWindow is how long a trial must run without a sensor crash
	// before it becomes the new last-known-good.
	HealthWindow Duration `toml:"health_window"`
	// Tries is the number of sensor starts a trial gets in its health
	// window; LoadTries the crashes while loading it may suffer.
	Tries     uint8 `toml:"tries"`
	LoadTries uint8 `toml:"load_tries"`
	// Agent is the sensor the daemon supervises.
	Agent Agent `toml:"agent"`
	// Telemetry is where events go.
	Telemetry Telemetry `toml:"telemetry"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
	// LogFormat is text or json (slog's JSON lines, for log shippers):
	// how `ringfenced run` logs to stderr. A Windows service logs to the
	// event log whatever it says.
	LogFormat string `toml:"log_format"`
	// MetricsListen, when set, is the address ("127.0.0.1:9464") where
	// ringfenced serves the agent's health and the content it runs in
	// Prometheus's text format, at /metrics; empty (the default) serves
	// nothing. A loopback address keeps it to this machine: anything
	// else serves it to whoever can reach the host (MetricsLoopback).
	MetricsListen string `toml:"metrics_listen"`
}

// Agent configures the supervised sensor and its preflight. Vendors replace
// the reference sensor here, not in code.
type Agent struct {
	// Command starts the agent; empty means the reference sensor (this
	// binary's "agent" command). The agent loads content through the
	// loader contract and speaks the line protocol in docs/ringfenced.md.
	Command []string `toml:"command"`
	// Capabilities is the installed interpreter's capability manifest;
	// empty means the reference agent's: the manifest a vendor build
	// embeds (vendorbuild.Capabilities), else the built-in sensor's.
	Capabilities string `toml:"capabilities"`
	// PreflightCommand runs one channel file in the interpreter (the path
	// is appended); empty means the reference sensor's preflight.
	PreflightCommand []string `toml:"preflight_command"`
	// PreflightTimeout bounds one preflight run.
	PreflightTimeout Duration `toml:"preflight_timeout"`
	// StartTimeout is how long the agent may take to report its load.
	StartTimeout Duration `toml:"start_timeout"`
	// RestartDelay is the first wait before restarting an agent that
	// exited; it doubles up to a minute while the agent keeps dying.
	RestartDelay Duration `toml:"restart_delay"`
}

// Telemetry configures the upstream reporting.
type Telemetry struct {
	// Endpoint is the rollout server's base URL; empty disables sending
	// (events still queue in state.db). A vendor build's server URL when
	// the file leaves it out (endpoint = "" in the file turns it off).
	Endpoint string `toml:"endpoint"`
	// Interval is how often queued events are sent and a heartbeat queued.
	Interval Duration `toml:"interval"`
	// EnrolmentTokenFile names a file holding the enrolment token the
	// vendor issued ('ringfence-server tokens create'): it goes with the
	// host's batches until the server admits the host, into the fleet and
	// with the tags the token carries. Without one, the host waits as
	// pending until an operator accepts it. A secret: the file must not be
	// readable by others (0600).
	EnrolmentTokenFile string `toml:"enrolment_token_file"`
}

// Duration is a time.Duration written as a Go duration string ("5m").
type Duration struct{ time.Duration }

// UnmarshalText reads "90s", "5m", "1h30m".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (write it like \"90s\", \"5m\" or \"1h\")", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Default returns the configuration used for every key the file leaves out.
// On a vendor build the repository and the telemetry endpoint are the
// embedded server URL, and the trusted root the embedded root.json
// (vendorbuild); otherwise the file must name the first two.
func Default() Config {
	pol := bootguard.DefaultPolicy()
	return Config{
		Root:         DefaultRoot,
		Repository:   vendorbuild.ServerURL(),
		PollInterval: Duration{5 * time.Minute},
		PollJitter:   Duration{time.Minute},
		Rings:        RingsDefault,
		HealthWindow: Duration{10 * time.Minute},
		Tries:        pol.Tries,
		LoadTries:    pol.LoadTries,
		Agent: Agent{
			PreflightTimeout: Duration{30 * time.Second},
			StartTimeout:     Duration{time.Minute},
			RestartDelay:     Duration{time.Second},
		},
		Telemetry: Telemetry{Endpoint: vendorbuild.ServerURL(), Interval: Duration{time.Minute}},
		LogLevel:  "info",
		LogFormat: "text",
	}
}

// Load reads and checks the file at path. Relative paths in it are taken
// relative to the file's directory.
func Load(path string) (Config, error) {
	b, err := boundedio.ReadFile(path, MaxSize)
	switch {
	case errors.Is(err, boundedio.ErrTooLarge):
		return Config{}, fmt.Errorf("config: %w; a configuration is a few KiB: is --config the right file?", err)
	case err != nil:
		return Config{}, fmt.Errorf("config: %w (write one, or pass --config; docs/ringfenced.md lists the keys)", err)
	}
	c, err := Parse(b, filepath.Dir(path))
	if err != nil {
		return Config{}, fmt.Errorf("config: %s: %w", path, err)
	}
	return c, nil
}

// Parse reads a configuration from TOML bytes over Default and checks it;
// relative paths are resolved against dir.
func Parse(b []byte, dir string) (Config, error) {
	c := Default()
	md, err := toml.Decode(string(b), &c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			if pe.LastKey != "" {
				return Config{}, fmt.Errorf("line %d, %s: %s", pe.Position.Line, pe.LastKey, pe.Message)
			}
			return Config{}, fmt.Errorf("line %d: %s", pe.Position.Line, pe.Message)
		}
		return Config{}, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Config{}, fmt.Errorf("unknown key %s (docs/ringfenced.md lists the keys)", strings.Join(keys, ", "))
	}
	for _, p := range []*string{&c.Root, &c.TrustedRoot, &c.CAFile, &c.Agent.Capabilities, &c.Telemetry.EnrolmentTokenFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	return c, c.Check()
}

// MaxChannels bounds the channels one host follows.
const MaxChannels = 64

// Followed returns the channels the host follows, in ascending order (the
// order its loader loads them in).
func (c Config) Followed() []uint32 {
	if len(c.Channels) == 0 {
		if c.Channel == 0 {
			return nil
		}
		return []uint32{c.Channel}
	}
	out := slices.Clone(c.Channels)
	slices.Sort(out)
	return slices.Compact(out)
}

// PinFor returns the version channel ch is pinned to, or 0.
func (c Config) PinFor(ch uint32) uint32 {
	if v, ok := c.Pins[strconv.FormatUint(uint64(ch), 10)]; ok {
		return v
	}
	return c.Pin
}

// Check reports the first thing wrong with c, naming the key.
func (c Config) Check() error {
	if err := c.checkChannels(); err != nil {
		return err
	}
	switch {
	case c.Root == "":
		return errors.New("root: must be set")
	case c.Repository == "":
		return errors.New("repository: must be set to the TUF repository's base URL")
	case c.TrustedRoot == "" && vendorbuild.Root() == nil:
		return errors.New("trusted_root: must name the root.json installed with the agent (this build embeds none: a vendor build, make dist VENDOR_ROOT=..., does)")
	case c.Channel == 0 && len(c.Channels) == 0:
		return errors.New("channels: name the content channels this host follows (channels = [291, 292])")
	case c.Channel != 0 && len(c.Channels) != 0:
		return errors.New("channel and channels: set one of the two (channels = [291, 292])")
	case len(c.Channels) > MaxChannels:
		return fmt.Errorf("channels: %d channels; at most %d", len(c.Channels), MaxChannels)
	case c.Pin != 0 && len(c.Followed()) > 1:
		return errors.New("pin: with several channels, pin each under [pins] (291 = 1001)")
	case c.PollInterval.Duration < time.Second:
		return fmt.Errorf("poll_interval: %v is below the minimum of 1s", c.PollInterval)
	case c.PollJitter.Duration < 0:
		return errors.New("poll_jitter: must not be negative")
	case c.HealthWindow.Duration < 0:
		return errors.New("health_window: must not be negative")
	case c.Tries < 1:
		return errors.New("tries: must be at least 1")
	case c.LoadTries < 1:
		return errors.New("load_tries: must be at least 1")
	case c.Agent.PreflightTimeout.Duration <= 0 || c.Agent.StartTimeout.Duration <= 0 || c.Agent.RestartDelay.Duration <= 0:
		return errors.New("agent: preflight_timeout, start_timeout and restart_delay must be positive")
	case c.Telemetry.Interval.Duration < time.Second:
		return fmt.Errorf("telemetry.interval: %v is below the minimum of 1s", c.Telemetry.Interval)
	}
	if err := checkURL("repository", c.Repository); err != nil {
		return err
	}
	if c.Telemetry.Endpoint != "" {
		if err := checkURL("telemetry.endpoint", c.Telemetry.Endpoint); err != nil {
			return err
		}
	}
	if !slices.Contains([]string{RingsDefault, RingsEarly, RingsLate}, c.Rings) {
		return fmt.Errorf("rings: %q; want %q, %q or %q", c.Rings, RingsDefault, RingsEarly, RingsLate)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		return fmt.Errorf("log_level: %q; want debug, info, warn or error", c.LogLevel)
	}
	if !slices.Contains([]string{"text", "json"}, c.LogFormat) {
		return fmt.Errorf("log_format: %q; want text or json", c.LogFormat)
	}
	if err := checkListen(c.MetricsListen); err != nil {
		return err
	}
	if c.TrustedRoot != "" {
		if _, err := os.Stat(c.TrustedRoot); err != nil {
			return fmt.Errorf("trusted_root: %w", err)
		}
	}
	if c.Agent.Capabilities != "" {
		if _, err := os.Stat(c.Agent.Capabilities); err != nil {
			return fmt.Errorf("agent.capabilities: %w", err)
		}
	}
	if c.Telemetry.EnrolmentTokenFile != "" {
		if c.Telemetry.Endpoint == "" {
			return errors.New("telemetry.enrolment_token_file: set telemetry.endpoint too (the token goes to the rollout server)")
		}
		if _, err := c.EnrolmentToken(); err != nil {
			return err
		}
	}
	if c.CAFile != "" {
		for _, u := range []struct{ key, url string }{{"repository", c.Repository}, {"telemetry.endpoint", c.Telemetry.Endpoint}} {
			if p, err := url.Parse(u.url); err == nil && p.Scheme == "http" {
				return fmt.Errorf("ca_file pins TLS, but %s is %s; use https", u.key, u.url)
			}
		}
		if _, err := c.CAPool(); err != nil {
			return err
		}
	}
	return nil
}

// MaxTrustedRoot bounds the trusted root.json read at start-up.
const MaxTrustedRoot = 1 << 20

// TrustedRootJSON is the root.json the host trusts first: the file
// trusted_root names, or, when it is unset, the one a vendor build embeds.
func (c Config) TrustedRootJSON() ([]byte, error) {
	if c.TrustedRoot == "" {
		if b := vendorbuild.Root(); b != nil {
			return b, nil
		}
		return nil, errors.New("trusted_root: must name the root.json installed with the agent (this build embeds none)")
	}
	b, err := boundedio.ReadFile(c.TrustedRoot, MaxTrustedRoot)
	if err != nil {
		return nil, fmt.Errorf("trusted_root: %w", err)
	}
	return b, nil
}

// maxTokenFile bounds the enrolment token file read.
const maxTokenFile = 4 << 10

// EnrolmentToken reads telemetry.enrolment_token_file ("" when it is not
// set): bounded, refused when others may read or write it, one line of at
// most wire.MaxTokenLen bytes.
func (c Config) EnrolmentToken() (string, error) {
	path := c.Telemetry.EnrolmentTokenFile
	if path == "" {
		return "", nil
	}
	if err := fileperm.CheckSecret(path, "enrolment token file"); err != nil {
		return "", fmt.Errorf("telemetry.enrolment_token_file: %w", err)
	}
	b, err := boundedio.ReadFile(path, maxTokenFile)
	if err != nil {
		return "", fmt.Errorf("telemetry.enrolment_token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || len(tok) > wire.MaxTokenLen || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("telemetry.enrolment_token_file: %s does not hold one token (as 'ringfence-server tokens create' printed it)", path)
	}
	return tok, nil
}

// CAPool is the certificate pool ca_file names; nil when it is not set
// (the system's roots are trusted).
func (c Config) CAPool() (*x509.CertPool, error) {
	if c.CAFile == "" {
		return nil, nil
	}
	pool, err := capool.Load(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	return pool, nil
}

func checkURL(key, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%s: %q is not an http(s) URL", key, s)
	}
	return nil
}

// checkListen checks metrics_listen: empty, or an IP address (or
// localhost) and a port. A host name other than localhost is refused: what
// it resolves to could change under the daemon, and an interface is named
// by its address.
func checkListen(addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("metrics_listen: %q is not HOST:PORT (write \"127.0.0.1:9464\")", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return fmt.Errorf("metrics_listen: port %q is not a number from 0 to 65535", port)
	}
	switch {
	case host == "":
		return fmt.Errorf("metrics_listen: %q names no address, which would serve every interface; write \"127.0.0.1:%s\" (this machine only), or \"0.0.0.0:%s\" if every network that reaches the host may read it", addr, port, port)
	case host == "localhost":
	case net.ParseIP(host) == nil:
		return fmt.Errorf("metrics_listen: %q is not an IP address; name the interface by its address (\"127.0.0.1:%s\")", host, port)
	}
	return nil
}

// MetricsLoopback reports whether metrics_listen keeps /metrics to this
// machine (a loopback address, or localhost); an unset one serves nothing
// and counts as loopback.
func (c Config) MetricsLoopback() bool {
	host, _, err := net.SplitHostPort(c.MetricsListen)
	if c.MetricsListen == "" || host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}

// HostTags are the tags the host reports: Tags, and EarlyTag with
// rings = "early".
func (c Config) HostTags() []string {
	tags := slices.Clone(c.Tags)
	if c.Rings == RingsEarly && !slices.Contains(tags, EarlyTag) {
		tags = append(tags, EarlyTag)
	}
	return tags
}

// checkChannels refuses channel 0, the same channel twice, and a pin for a
// channel the host does not follow.
func (c Config) checkChannels() error {
	seen := map[uint32]bool{}
	for _, ch := range c.Channels {
		if ch == 0 {
			return errors.New("channels: 0 is not a channel")
		}
		if seen[ch] {
			return fmt.Errorf("channels: %d is listed twice", ch)
		}
		seen[ch] = true
	}
	for k := range c.Pins {
		ch, err := strconv.ParseUint(k, 10, 32)
		if err != nil || !slices.Contains(c.Followed(), uint32(ch)) {
			return fmt.Errorf("pins: %q is not a channel this host follows", k)
		}
	}
	return nil
}

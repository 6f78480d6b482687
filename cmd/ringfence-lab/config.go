package main

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/ringfence/ringfence/hostconfig"
)

// defaultConfig is the lab's built-in settings (lab.toml beside this file).
//
//go:embed lab.toml
var defaultConfig []byte

// MaxHosts bounds --hosts: every host is two processes (ringfenced and its
// agent) plus a preflight child per install, on a 2-core machine.
const MaxHosts = 200

// maxConfigSize bounds a --config file.
const maxConfigSize = 1 << 20

// Config is the lab: the fleet, the hosts' and the server's settings, the
// rollout plan and the content of each scenario.
type Config struct {
	Hosts         int     `toml:"hosts" json:"hosts"`
	Canaries      int     `toml:"canaries" json:"canaries"`
	LegacyPercent float64 `toml:"legacy_percent" json:"legacy_percent"`
	// LegacyCanaries of the legacy hosts (a 7.11 agent under a 7.12
	// manifest) are canaries: the first ones of the canary group.
	LegacyCanaries int `toml:"legacy_canaries" json:"legacy_canaries"`
	// AgentPreflightCanaries of those legacy canaries (the last ones)
	// preflight content with their installed agent (agent.preflight_command
	// is the 7.11 agent's own command line plus --preflight); every other
	// host runs the reference preflight against its 7.12 manifest.
	// Scenario 4 shows both on the same content in the same canary group,
	// so it needs at least one of each: 1 <= agent_preflight_canaries <
	// legacy_canaries, hence legacy_canaries >= 2 and canaries >= 2.
	AgentPreflightCanaries int `toml:"agent_preflight_canaries" json:"agent_preflight_canaries"`
	// Channels are the two content channels every host follows, with one
	// daemon and one identity (a boot record and A/B slots each). Scenarios
	// 1-4 and 6 run on the first, the channel the content files carry;
	// scenario 5 rolls out on both at once.
	Channels []uint32 `toml:"channels" json:"channels"`

	Host    HostSettings    `toml:"host" json:"host"`
	Server  ServerSettings  `toml:"server" json:"server"`
	Rollout RolloutSettings `toml:"rollout" json:"rollout"`
	Content ContentSettings `toml:"content" json:"content"`
}

// HostSettings go into every host's ringfenced.toml.
type HostSettings struct {
	PollInterval      Duration `toml:"poll_interval" json:"poll_interval"`
	PollJitter        Duration `toml:"poll_jitter" json:"poll_jitter"`
	HealthWindow      Duration `toml:"health_window" json:"health_window"`
	RestartDelay      Duration `toml:"restart_delay" json:"restart_delay"`
	TelemetryInterval Duration `toml:"telemetry_interval" json:"telemetry_interval"`
}

// ServerSettings are ringfence-server serve's flags.
type ServerSettings struct {
	EvalInterval Duration `toml:"eval_interval" json:"eval_interval"`
}

// RolloutSettings shape every rollout the lab starts.
type RolloutSettings struct {
	HealthWindow Duration `toml:"health_window" json:"health_window"`
	Grace        Duration `toml:"grace" json:"grace"`
	Silence      Duration `toml:"silence" json:"silence"`
	// Timeout ends a scenario that has not finished: the lab fails.
	Timeout Duration `toml:"timeout" json:"timeout"`
	Stages  []Stage  `toml:"stages" json:"stages"`
}

// Stage is one ring: the canary group (hosts tagged "canary") or a
// percentage of host buckets.
type Stage struct {
	Name    string   `toml:"name" json:"name"`
	Canary  bool     `toml:"canary" json:"canary,omitempty"`
	Percent float64  `toml:"percent" json:"percent,omitempty"`
	Bake    Duration `toml:"bake" json:"bake"`
	// MinHosts of the stage must report healthy before it advances; 0
	// means all of them.
	MinHosts int `toml:"min_hosts" json:"min_hosts,omitempty"`
}

// ContentSettings name the channel files (testdata/channels/NAME.rfch) of
// the scenarios, all of the first channel.
type ContentSettings struct {
	Good     []string `toml:"good" json:"good"`
	CF291    string   `toml:"cf291" json:"cf291"`
	Bypassed string   `toml:"bypassed" json:"bypassed"`
	// Costly is scenario 6's content: it passes every check and crashes
	// nothing, but its patterns cost the 7.11 glob (backtracking) several
	// times the legacy agents' usual CPU; the server's health test alone
	// must halt it. Its version must be newer than every other the lab
	// publishes on the first channel (scenario 6 runs last).
	Costly string `toml:"costly" json:"costly"`
	// Second is the second channel's first content in scenario 5: this
	// good file re-encoded as version SecondVersion of the second channel.
	// Beside it, CF291 goes out again on the first channel, re-encoded as
	// the version after every one the other scenarios use.
	Second        string `toml:"second" json:"second"`
	SecondVersion uint32 `toml:"second_version" json:"second_version"`
}

// Duration is ringfenced's configuration duration ("5s", "2m"): the lab's
// settings are written like the hosts' own.
type Duration = hostconfig.Duration

// CanaryTag is the tag canary hosts report and the canary stage names.
const CanaryTag = "canary"

// DefaultConfig returns the built-in settings.
func DefaultConfig() Config {
	c, err := ParseConfig(defaultConfig)
	if err != nil {
		panic("ringfence-lab: the built-in lab.toml: " + err.Error())
	}
	return c
}

// ParseConfig reads a whole lab configuration from TOML and checks it.
// Unknown keys are errors: a typo must not silently fall back to a default.
func ParseConfig(b []byte) (Config, error) {
	if len(b) > maxConfigSize {
		return Config{}, fmt.Errorf("config: %d bytes; the limit is %d", len(b), maxConfigSize)
	}
	var c Config
	md, err := toml.Decode(string(b), &c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return Config{}, fmt.Errorf("config: line %d: %s", pe.Position.Line, pe.Message)
		}
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Config{}, fmt.Errorf("config: unknown key %s (cmd/ringfence-lab/lab.toml has every key)", strings.Join(keys, ", "))
	}
	return c, c.Check()
}

// Check reports the first thing wrong with c, naming the key.
func (c Config) Check() error {
	pos := func(key string, d Duration) error {
		if d.Duration <= 0 {
			return fmt.Errorf("config: %s must be a positive duration", key)
		}
		return nil
	}
	switch {
	case c.Hosts < 3 || c.Hosts > MaxHosts:
		return fmt.Errorf("config: hosts: %d; want 3..%d", c.Hosts, MaxHosts)
	case c.Canaries < 2 || c.Canaries >= c.Hosts:
		return fmt.Errorf("config: canaries: %d; want 2..%d (fewer than the hosts): scenario 4 needs two legacy canaries", c.Canaries, c.Hosts-1)
	case !(c.LegacyPercent >= 0 && c.LegacyPercent <= 100):
		return fmt.Errorf("config: legacy_percent: %g; want 0..100", c.LegacyPercent)
	case c.LegacyCanaries < 2 || c.LegacyCanaries > c.Canaries:
		return fmt.Errorf("config: legacy_canaries: %d; want 2..canaries (%d): scenario 4 needs a legacy canary with the reference preflight and one with preflight by the installed agent", c.LegacyCanaries, c.Canaries)
	case c.AgentPreflightCanaries < 1 || c.AgentPreflightCanaries >= c.LegacyCanaries:
		return fmt.Errorf("config: agent_preflight_canaries: %d; want 1..%d (fewer than legacy_canaries, %d): scenario 4 needs a legacy canary with preflight by the installed agent and one with the reference preflight", c.AgentPreflightCanaries, c.LegacyCanaries-1, c.LegacyCanaries)
	case len(c.Channels) != 2 || c.Channels[0] == 0 || c.Channels[1] == 0 || c.Channels[0] == c.Channels[1]:
		return fmt.Errorf("config: channels: %v; want two channels, the content files' first ([291, 292]): scenarios 1-4 and 6 run on the first, scenario 5 on both", c.Channels)
	case c.Host.PollInterval.Duration < time.Second:
		return errors.New("config: host.poll_interval must be at least 1s (ringfenced's minimum)")
	case c.Host.PollJitter.Duration < 0:
		return errors.New("config: host.poll_jitter must not be negative")
	case c.Host.TelemetryInterval.Duration < time.Second:
		return errors.New("config: host.telemetry_interval must be at least 1s (ringfenced's minimum)")
	case len(c.Rollout.Stages) == 0:
		return errors.New("config: rollout.stages: give at least the 100% stage")
	case len(c.Content.Good) == 0:
		return errors.New("config: content.good: name at least one good channel file")
	case c.Content.SecondVersion == 0:
		return errors.New("config: content.second_version must be set: the second channel's version in scenario 5")
	}
	for _, f := range []struct{ key, name string }{{"cf291", c.Content.CF291}, {"bypassed", c.Content.Bypassed},
		{"second", c.Content.Second}, {"costly", c.Content.Costly}} {
		if f.name == "" {
			return fmt.Errorf("config: content.%s must name a channel file (testdata/channels/NAME.rfch)", f.key)
		}
	}
	for _, d := range []struct {
		key string
		d   Duration
	}{{"host.health_window", c.Host.HealthWindow}, {"host.restart_delay", c.Host.RestartDelay}, {"server.eval_interval", c.Server.EvalInterval},
		{"rollout.health_window", c.Rollout.HealthWindow}, {"rollout.grace", c.Rollout.Grace},
		{"rollout.silence", c.Rollout.Silence}, {"rollout.timeout", c.Rollout.Timeout}} {
		if err := pos(d.key, d.d); err != nil {
			return err
		}
	}
	last := 0.0
	for i, s := range c.Rollout.Stages {
		switch {
		case s.Name == "":
			return fmt.Errorf("config: rollout.stages[%d]: name it", i)
		case s.Canary && (i != 0 || s.Percent != 0):
			return fmt.Errorf("config: rollout.stages[%d] (%s): only the first stage can be the canary group, and it has no percent", i, s.Name)
		case !s.Canary && !(s.Percent > 0 && s.Percent <= 100):
			return fmt.Errorf("config: rollout.stages[%d] (%s): percent must be in (0, 100]", i, s.Name)
		case s.Percent < last:
			return fmt.Errorf("config: rollout.stages[%d] (%s): %g%% is less than the stage before: stages are nested", i, s.Name, s.Percent)
		case s.Bake.Duration < 0 || s.MinHosts < 0:
			return fmt.Errorf("config: rollout.stages[%d] (%s): bake and min_hosts must not be negative", i, s.Name)
		}
		last = s.Percent
	}
	if last != 100 {
		return errors.New("config: rollout.stages: the last stage must be 100%")
	}
	if !c.Rollout.Stages[0].Canary {
		return errors.New("config: rollout.stages: the first stage must be the canary group (canary = true): scenario 4 is the canary rule")
	}
	if c.LegacyHosts() > c.Hosts-(c.Canaries-c.LegacyCanaries) {
		return fmt.Errorf("config: %g%% legacy hosts do not fit beside the %d non-legacy canaries", c.LegacyPercent, c.Canaries-c.LegacyCanaries)
	}
	return nil
}

// LegacyHosts is how many hosts run the 7.11 agent: legacy_percent of the
// fleet, rounded, and at least legacy_canaries.
func (c Config) LegacyHosts() int {
	return max(int(math.Round(float64(c.Hosts)*c.LegacyPercent/100)), c.LegacyCanaries)
}

// HostSpec is one host of the lab's fleet.
type HostSpec struct {
	Name   string `json:"name"`
	Canary bool   `json:"canary,omitempty"`
	// Legacy hosts run the 7.11 agent under a 7.12 manifest.
	Legacy bool `json:"legacy,omitempty"`
	// AgentPreflight hosts preflight content with their installed agent
	// (`ringfenced agent --capabilities <its manifest> --preflight`); the
	// others with the reference preflight against the installed manifest
	// (`ringfenced sensor preflight --capabilities <7.12>`).
	AgentPreflight bool `json:"agent_preflight,omitempty"`
}

// Fleet lays out the hosts: h01..hNN, the first Canaries of them canaries;
// the first LegacyCanaries canaries are legacy, the last
// AgentPreflightCanaries of those preflight with their installed agent, and
// the other legacy hosts are spread evenly over the non-canary hosts.
func (c Config) Fleet() []HostSpec {
	w := len(fmt.Sprint(c.Hosts))
	out := make([]HostSpec, c.Hosts)
	for i := range out {
		out[i] = HostSpec{Name: fmt.Sprintf("h%0*d", max(w, 2), i+1), Canary: i < c.Canaries, Legacy: i < c.LegacyCanaries,
			AgentPreflight: i < c.LegacyCanaries && i >= c.LegacyCanaries-c.AgentPreflightCanaries}
	}
	rest, others := c.LegacyHosts()-c.LegacyCanaries, c.Hosts-c.Canaries
	for k := range rest {
		out[c.Canaries+k*others/rest].Legacy = true
	}
	return out
}

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/vendorbuild"
	"github.com/ringfence/ringfence/selfupdate"
	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/telemetry"
)

// serve runs the daemon for cfg until ctx ends.
func serve(ctx context.Context, cfg hostconfig.Config, log *slog.Logger) error {
	opts, err := daemonOptions(cfg, log)
	if err != nil {
		return err
	}
	// The binary's own boot-loop guard, before anything else.
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	updates := filepath.Join(cfg.Root, selfupdate.DirName)
	switch dec, err := selfupdate.Start(exe, updates, version); {
	case err != nil:
		log.Error("binary update record", "err", err)
	case dec == selfupdate.Restart:
		return fmt.Errorf("ringfenced %s failed its first start; the previous binary is back in place and starts next", version)
	case dec == selfupdate.Trial:
		log.Warn("first start of a new ringfenced binary; it is confirmed when the agent has loaded", "version", version)
		opts.OnReady = func() {
			if err := selfupdate.Confirm(updates); err != nil {
				log.Error("confirm the new binary", "err", err)
				return
			}
			log.Info("new ringfenced binary confirmed", "version", version)
		}
	}
	opts.Binary = &daemon.BinaryUpdate{
		Version:  version,
		Platform: goos + "-" + runtime.GOARCH,
		Apply: func(path string, sum [32]byte, v string) error {
			return selfupdate.Apply(exe, path, sum, version, v, updates)
		},
		Failed: func() []string { f, _ := selfupdate.Failed(updates); return f },
	}
	d, err := daemon.New(opts)
	if err != nil {
		return err
	}
	log.Info("ringfenced started", "version", version, "host_id", opts.HostID, "root", cfg.Root, "channels", cfg.Followed(), "repository", cfg.Repository)
	return d.Run(ctx)
}

// daemonOptions turns the configuration into the daemon's options: the
// host identity (created on first start), the capabilities, the agent and
// preflight commands (the reference sensor in this binary unless
// configured), the trusted root and the telemetry sender.
func daemonOptions(cfg hostconfig.Config, log *slog.Logger) (daemon.Options, error) {
	if err := os.MkdirAll(cfg.Root, 0o700); err != nil {
		return daemon.Options{}, fmt.Errorf("root %s: %w", cfg.Root, err)
	}
	id, err := telemetry.LoadOrCreateIdentity(filepath.Join(cfg.Root, "identity"))
	if err != nil {
		return daemon.Options{}, err
	}
	caps, err := loadCapabilities(cfg.Agent.Capabilities)
	if err != nil {
		return daemon.Options{}, fmt.Errorf("agent.capabilities: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return daemon.Options{}, err
	}
	agentCmd, preflightCmd := cfg.Agent.Command, cfg.Agent.PreflightCommand
	if len(agentCmd) == 0 {
		agentCmd = []string{exe, "agent"}
		if cfg.Agent.Capabilities != "" {
			agentCmd = append(agentCmd, "--capabilities", cfg.Agent.Capabilities)
		}
	}
	if len(preflightCmd) == 0 {
		switch {
		case cfg.Agent.Capabilities != "":
			preflightCmd = sensor.PreflightCommand(exe, cfg.Agent.Capabilities)
		case vendorbuild.Capabilities() != nil:
			// The manifest a vendor build embeds is the default of the
			// reference agent, not of 'sensor preflight' (the built-in
			// sensor's): the agent's own preflight mode runs the same
			// harness with the agent's manifest.
			preflightCmd = []string{exe, "agent", "--preflight"}
		default:
			preflightCmd = sensor.PreflightCommand(exe, "")
		}
	}
	trusted, err := cfg.TrustedRootJSON()
	if err != nil {
		return daemon.Options{}, err
	}
	hc, err := httpClient(cfg)
	if err != nil {
		return daemon.Options{}, err
	}
	opts := daemon.Options{
		Config:           cfg,
		HostID:           id.HostID(),
		Capabilities:     caps,
		AgentCommand:     agentCmd,
		PreflightCommand: preflightCmd,
		TrustedRoot:      trusted,
		HTTPClient:       hc,
		Log:              log,
	}
	if cfg.Telemetry.Endpoint != "" {
		if opts.Sender, err = newSender(cfg, id, hc); err != nil {
			return daemon.Options{}, err
		}
	}
	return opts, nil
}

// httpTimeout bounds one request of the daemon, as the TUF client's and the
// telemetry sender's own defaults did.
const httpTimeout = 30 * time.Second

// httpClient is the one client behind every request the daemon makes: to
// the repository (TUF) and to the telemetry endpoint. With ca_file it
// trusts only the certificates in that file: a certificate the system's
// roots would accept, from any public CA, is refused.
func httpClient(cfg hostconfig.Config) (*http.Client, error) {
	pool, err := cfg.CAPool()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if pool != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Timeout: httpTimeout, Transport: tr}, nil
}

// newSender is the telemetry sender: batches signed with the host key, and
// the enrolment token until the server admits the host. The daemon hands
// it what each batch says of the host (daemon.New calls SetInfo).
func newSender(cfg hostconfig.Config, id *telemetry.Identity, hc *http.Client) (*telemetry.Sender, error) {
	tok, err := cfg.EnrolmentToken()
	if err != nil {
		return nil, err
	}
	return &telemetry.Sender{Endpoint: cfg.Telemetry.Endpoint, Identity: id, Client: hc, EnrolmentToken: tok}, nil
}

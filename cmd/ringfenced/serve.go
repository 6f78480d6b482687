package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"github.com/ringfence/ringfence/agentupdate"
	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/config"
	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/telemetry"
	"github.com/ringfence/ringfence/validator"
)

// maxTrustedRoot bounds the root.json read at start-up.
const maxTrustedRoot = 1 << 20

// serve runs the daemon for cfg until ctx ends.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	opts, err := daemonOptions(cfg, log)
	if err != nil {
		return err
	}
	// The binary's own boot-loop guard, before anything else.
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	updates := filepath.Join(cfg.Root, "agent")
	switch dec, err := agentupdate.Start(exe, updates, version); {
	case err != nil:
		log.Error("binary update record", "err", err)
	case dec == agentupdate.Restart:
		return fmt.Errorf("ringfenced %s failed its first start; the previous binary is back in place and starts next", version)
	case dec == agentupdate.Trial:
		log.Warn("first start of a new ringfenced binary; it is confirmed when the agent has loaded", "version", version)
		opts.OnReady = func() {
			if err := agentupdate.Confirm(updates); err != nil {
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
			return agentupdate.Apply(exe, path, sum, version, v, updates)
		},
		Failed: func() []string { f, _ := agentupdate.Failed(updates); return f },
	}
	d, err := daemon.New(opts)
	if err != nil {
		return err
	}
	log.Info("ringfenced started", "version", version, "host_id", opts.HostID, "root", cfg.Root, "channel", cfg.Channel, "repository", cfg.Repository)
	return d.Run(ctx)
}

// daemonOptions turns the configuration into the daemon's options: the
// host identity (created on first start), the capabilities, the agent and
// preflight commands (the reference sensor in this binary unless
// configured), the trusted root and the telemetry sender.
func daemonOptions(cfg config.Config, log *slog.Logger) (daemon.Options, error) {
	if err := os.MkdirAll(cfg.Root, 0o700); err != nil {
		return daemon.Options{}, fmt.Errorf("root %s: %w", cfg.Root, err)
	}
	id, err := telemetry.LoadOrCreateIdentity(filepath.Join(cfg.Root, "identity"))
	if err != nil {
		return daemon.Options{}, err
	}
	caps := sensor.DefaultCapabilities()
	if cfg.Agent.Capabilities != "" {
		if caps, err = validator.LoadCapabilities(cfg.Agent.Capabilities); err != nil {
			return daemon.Options{}, fmt.Errorf("agent.capabilities: %w", err)
		}
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
		preflightCmd = []string{exe, "sensor", "preflight"}
		if cfg.Agent.Capabilities != "" {
			preflightCmd = append(preflightCmd, "--capabilities", cfg.Agent.Capabilities)
		}
	}
	trusted, err := boundedio.ReadFile(cfg.TrustedRoot, maxTrustedRoot)
	if err != nil {
		return daemon.Options{}, fmt.Errorf("trusted_root: %w", err)
	}
	opts := daemon.Options{
		Config:           cfg,
		HostID:           id.HostID(),
		Capabilities:     caps,
		AgentCommand:     agentCmd,
		PreflightCommand: preflightCmd,
		TrustedRoot:      trusted,
		Log:              log,
	}
	if cfg.Telemetry.Endpoint != "" {
		opts.Sender = newSender(cfg, id)
	}
	return opts, nil
}

// newSender is the telemetry sender: batches signed with the host key,
// carrying the host's tags and the version it runs (from the boot record).
func newSender(cfg config.Config, id *telemetry.Identity) *telemetry.Sender {
	record := filepath.Join(cfg.Root, installer.RecordName)
	return &telemetry.Sender{
		Endpoint: cfg.Telemetry.Endpoint,
		Identity: id,
		Info: func() ([]string, map[string]uint32) {
			rec, err := bootguard.Read(record)
			if err != nil || rec.Active == bootguard.SlotNone {
				return cfg.HostTags(), nil
			}
			e := rec.Entry(rec.Active)
			return cfg.HostTags(), map[string]uint32{strconv.FormatUint(uint64(e.Channel), 10): e.Version}
		},
	}
}

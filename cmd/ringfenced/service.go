package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/kardianos/service"

	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/cli"
)

const (
	serviceName        = hostconfig.ServiceName
	serviceDisplayName = "Ringfence updater"
	serviceDescription = hostconfig.ServiceDescription
)

// Exit codes of `ringfenced status`.
const (
	statusRunning      = 0
	statusStopped      = 3
	statusNotInstalled = 4
)

// serviceConfig is the service's registration: `run --config <abs path>`.
func serviceConfig(cfgPath string, cfg hostconfig.Config) (*service.Config, error) {
	abs, err := filepath.Abs(cfgPath)
	if err != nil {
		return nil, err
	}
	return &service.Config{
		Name:        serviceName,
		DisplayName: serviceDisplayName,
		Description: serviceDescription,
		Arguments:   []string{"run", "--config", abs},
		Option: service.KeyValue{
			// The one unit, shared with the packages (hostconfig/service.go).
			"SystemdScript":          hostconfig.SystemdUnitTemplate(cfg.Root),
			"Restart":                "on-failure",
			"OnFailure":              "restart",
			"OnFailureDelayDuration": "2s",
			"OnFailureResetPeriod":   3600,
			"StartType":              "automatic",
		},
	}, nil
}

const serviceHelp = `Controls ringfenced as a service through the platform's service manager: a
systemd unit where systemd runs (Restart=on-failure, RestartSec=2, hardened), a
SysV init script where it does not, a Windows service with recovery actions
(restart after 2 s) on Windows. install checks the configuration first and
registers 'ringfenced run --config <absolute path>'. status prints one line and
exits 0 (running), 3 (stopped) or 4 (not installed).`

// serviceControl implements install|uninstall|start|stop|status.
func serviceControl(action string, args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := configFlags(action, "[--config FILE]", serviceHelp, stdout, stderr)
	if _, code, ok := cli.ParseArgs(fs, args, stdout); !ok {
		return code
	}
	cfg, err := hostconfig.Load(*cfgPath)
	if err != nil && action == "install" {
		fmt.Fprintf(stderr, "ringfenced install: %v\nThe service would fail at start; fix the configuration first.\n", err)
		return cli.ExitRejected
	}
	if err != nil {
		cfg = hostconfig.Default()
	}
	sc, err := serviceConfig(*cfgPath, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "ringfenced:", err)
		return cli.ExitRejected
	}
	s, err := service.New(&program{}, sc)
	if err != nil {
		fmt.Fprintln(stderr, "ringfenced:", err)
		return cli.ExitRejected
	}
	switch action {
	case "status":
		st, err := s.Status()
		if err != nil && !errors.Is(err, service.ErrNotInstalled) {
			// SysV's "service NAME status" exits non-zero both when the
			// script is missing and when the daemon is stopped.
			if installed, known := installedByFile(s.Platform()); known {
				if !installed {
					err = service.ErrNotInstalled
				} else {
					st, err = service.StatusStopped, nil
				}
			}
		}
		switch {
		case errors.Is(err, service.ErrNotInstalled):
			fmt.Fprintln(stdout, "ringfenced: not installed")
			return statusNotInstalled
		case err != nil:
			fmt.Fprintln(stderr, "ringfenced status:", err)
			return cli.ExitRejected
		case st == service.StatusRunning:
			fmt.Fprintln(stdout, "ringfenced: running")
			return statusRunning
		default:
			fmt.Fprintln(stdout, "ringfenced: stopped")
			return statusStopped
		}
	case "install":
		err = s.Install()
		if err == nil {
			err = afterInstall()
		}
	case "uninstall":
		err = s.Uninstall()
		if err == nil {
			err = afterUninstall()
		}
	case "start":
		err = s.Start()
	case "stop":
		err = s.Stop()
	}
	if err != nil {
		fmt.Fprintf(stderr, "ringfenced %s: %v (run it as root / Administrator)\n", action, err)
		return cli.ExitRejected
	}
	fmt.Fprintf(stdout, "ringfenced: %s done (%s)\n", action, s.Platform())
	return cli.ExitOK
}

// program adapts the daemon to kardianos/service's Start/Stop.
type program struct {
	run    func(ctx context.Context, log *slog.Logger) error
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan error
}

func (p *program) Start(service.Service) error {
	if p.run == nil {
		return errors.New("ringfenced: nothing to run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan error, 1)
	go func() { p.done <- p.run(ctx, p.log) }()
	return nil
}

func (p *program) Stop(service.Service) error {
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	select {
	case err := <-p.done:
		return err
	case <-time.After(25 * time.Second):
		return errors.New("ringfenced: did not stop within 25 s")
	}
}

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
)

// isService asks Windows directly: kardianos/service's own detection fails
// on some hosts, and a service that does not answer the service control
// manager is killed after 30 s.
func isService() bool {
	ok, err := svc.IsWindowsService()
	return err == nil && ok
}

// runService runs under the service control manager with svc.Run, so the
// start is always reported, and logs to the Windows event log.
func runService(cfgPath string, run func(ctx context.Context, log *slog.Logger) error) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if el, err := eventlog.Open(serviceName); err == nil {
		defer el.Close()
		log = slog.New(newEventLogHandler(el, slog.LevelInfo))
	}
	return svc.Run(serviceName, &handler{run: run, log: log})
}

type handler struct {
	run func(ctx context.Context, log *slog.Logger) error
	log *slog.Logger
}

func (h *handler) Execute(_ []string, req <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.run(ctx, h.log) }()
	status <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	for {
		select {
		case err := <-done:
			cancel()
			if err != nil {
				h.log.Error("ringfenced stopped", "err", err)
				return true, 1 // a failure: the recovery actions restart it
			}
			return false, 0
		case c := <-req:
			switch c.Cmd {
			case svc.Interrogate:
				status <- c.CurrentStatus
			case svc.Stop, svc.Shutdown:
				status <- svc.Status{State: svc.StopPending}
				cancel()
				select {
				case <-done:
				case <-time.After(25 * time.Second):
				}
				return false, 0
			}
		}
	}
}

func afterInstall() error {
	err := eventlog.InstallAsEventCreate(serviceName, eventlog.Error|eventlog.Warning|eventlog.Info)
	if err != nil && !strings.Contains(err.Error(), "exists") {
		return fmt.Errorf("register the event log source: %w", err)
	}
	return nil
}

func installedByFile(string) (installed, known bool) { return false, false }

func afterUninstall() error { return eventlog.Remove(serviceName) }

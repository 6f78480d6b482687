//go:build !windows

package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
)

// isService: on Linux the service manager (systemd or SysV) runs
// `ringfenced run` as an ordinary process; run handles SIGTERM itself.
func isService() bool { return false }

func runService(string, func(ctx context.Context, log *slog.Logger) error) error {
	return errors.New("ringfenced: not started by a service manager")
}

// installedByFile says whether the service's init script or unit file is
// there, for the platforms kardianos/service installs a file on.
func installedByFile(platform string) (installed, known bool) {
	var path string
	switch platform {
	case "linux-systemv", "unix-systemv":
		path = "/etc/init.d/" + serviceName
	case "linux-systemd", "unix-systemd":
		path = "/etc/systemd/system/" + serviceName + ".service"
	default:
		return false, false
	}
	_, err := os.Stat(path)
	return err == nil, true
}

func afterInstall() error   { return nil }
func afterUninstall() error { return nil }

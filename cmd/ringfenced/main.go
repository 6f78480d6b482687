// Command ringfenced is the on-host updater: it polls the TUF repository,
// takes the content version the rollout plan gives this host, validates and
// preflights it against the installed interpreter, stages and activates it
// through the boot record, supervises the sensor that loads it, marks it good
// after the health window, and reports every step upstream. It runs in the
// foreground (run) or as a service (install, start, ...): a systemd unit or
// SysV script on Linux, a Windows service on Windows.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/cli"
	"github.com/ringfence/ringfence/sensor"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

const usage = `Usage: ringfenced COMMAND [flags]

Commands:
  run        run in the foreground (what the service runs)
  install    register ringfenced as a service (systemd, SysV or Windows)
  uninstall  remove the service
  start      start the service
  stop       stop the service
  status     say whether the service is installed and running
  agent      the reference sensor the daemon supervises (not run by hand)
  agent --preflight FILE
             run FILE in the agent's own interpreter, as a preflight command
  sensor preflight FILE
             the reference sensor's preflight harness
  version    print the version and the vendor values the build embeds

Every command takes --config FILE (default ` + hostconfig.DefaultPath + `).
The configuration keys are in docs/ringfenced.md.
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return cli.ExitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return cli.ExitOK
	case "version":
		printVersion(stdout)
		return cli.ExitOK
	case "run":
		return runForeground(args[1:], stdout, stderr)
	case "agent":
		return agentMain(args[1:], stdout, stderr)
	case "sensor":
		if len(args) > 1 && args[1] == "preflight" {
			return sensor.PreflightMain(args[2:], stdout, stderr)
		}
		fmt.Fprintln(stderr, "usage: ringfenced sensor preflight [--capabilities FILE] FILE")
		return cli.ExitUsage
	case "install", "uninstall", "start", "stop", "status":
		return serviceControl(args[0], args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "ringfenced: unknown command %q\n\n%s", args[0], usage)
	return cli.ExitUsage
}

// runForeground is `ringfenced run`: under a service manager it hands over to
// the service layer, otherwise it runs until SIGINT or SIGTERM.
func runForeground(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := configFlags("run", "[--config FILE] [--log-format text|json]", `Runs the daemon in the foreground until SIGINT or SIGTERM (or, started by
the service manager, until the service is stopped). It logs to stderr, as
text or as JSON lines (--log-format, or log_format in the configuration), or
to the Windows event log when it runs as a Windows service.`, stdout, stderr)
	logFormat := fs.String("log-format", "", "text or json (slog's JSON lines, for log shippers); overrides log_format in the configuration (default text)")
	if _, code, ok := cli.ParseArgs(fs, args, stdout); !ok {
		return code
	}
	if *logFormat != "" && *logFormat != "text" && *logFormat != "json" {
		fmt.Fprintf(stderr, "ringfenced run: --log-format %q: want text or json\n", *logFormat)
		return cli.ExitUsage
	}
	cfg, err := hostconfig.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "ringfenced:", err)
		return cli.ExitRejected
	}
	if *logFormat != "" {
		cfg.LogFormat = *logFormat
	}
	if isService() {
		if err := runService(*cfgPath, func(ctx context.Context, log *slog.Logger) error { return serve(ctx, cfg, log) }); err != nil {
			fmt.Fprintln(stderr, "ringfenced:", err)
			return cli.ExitRejected
		}
		return cli.ExitOK
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("ringfenced stopped", "err", err)
		return cli.ExitRejected
	}
	return cli.ExitOK
}

func configFlags(cmd, synopsis, description string, stdout, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := cli.NewFlags("ringfenced", cmd, synopsis, description, stdout, stderr)
	p := fs.String("config", hostconfig.DefaultPath, "configuration file (docs/ringfenced.md lists the keys)")
	return fs, p
}

// newLogger logs to w at level: as slog's text, or with format "json" as
// one JSON object a line (time, level, msg and the attributes), what fleet
// log shippers parse without a pattern.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

package hostconfig

import (
	"fmt"
	"strings"
)

// ServiceName is the name ringfenced runs under as a service: the systemd
// unit ringfenced.service, the SysV script, the Windows service.
const ServiceName = "ringfenced"

// ServiceDescription describes the service to the service manager.
const ServiceDescription = "Ringfence: safe content updates for the kernel agent (validate, preflight, A/B slots, boot guard)"

// systemdUnit is the one systemd unit ringfenced runs under, whoever
// installs it: 'ringfenced install' (through kardianos/service, whose
// template language this is: {{Key}}, {{range Key}}, pipes to cmd and
// cmdEscape) and the packages 'make dist' builds (RenderSystemdUnit).
// Restart on failure after 2 s, never give up, and the hardening options a
// daemon that writes only its root, starts the agent and talks HTTPS can
// live with. ROOT stands for the root directory.
const systemdUnit = `[Unit]
Description={{Description}}
ConditionFileIsExecutable={{Path | cmdEscape}}
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=0

[Service]
ExecStart={{Path | cmdEscape}}{{range Arguments}} {{. | cmd}}{{end}}
Restart=on-failure
RestartSec=2
TimeoutStopSec=30
KillMode=mixed
ProtectSystem=strict
ReadWritePaths=ROOT
ProtectHome=yes
PrivateTmp=yes
NoNewPrivileges=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallArchitectures=native
UMask=0077

[Install]
WantedBy=multi-user.target
`

// SystemdUnitTemplate is the unit for a daemon whose root is root, still in
// kardianos/service's template language: what 'ringfenced install' hands it
// (its SystemdScript option), and it fills in the binary and arguments.
func SystemdUnitTemplate(root string) string {
	return strings.ReplaceAll(systemdUnit, "ROOT", root)
}

// RenderSystemdUnit is the unit for a daemon whose root is root, rendered for
// the binary exe and its arguments exactly as kardianos/service renders
// SystemdUnitTemplate (its cmdEscape and cmd functions): the unit a package
// installs. It fails if the template uses anything it does not render, so a
// change to the template cannot slip into a package half-rendered.
func RenderSystemdUnit(root, exe string, args []string) (string, error) {
	var quoted strings.Builder
	for _, a := range args {
		quoted.WriteString(" " + `"` + strings.ReplaceAll(a, `"`, `\"`) + `"`)
	}
	out := strings.NewReplacer(
		"{{Description}}", ServiceDescription,
		"{{Path | cmdEscape}}", strings.ReplaceAll(exe, " ", `\x20`),
		"{{range Arguments}} {{. | cmd}}{{end}}", quoted.String(),
	).Replace(SystemdUnitTemplate(root))
	if i := strings.Index(out, "{{"); i >= 0 {
		line, _, _ := strings.Cut(out[i:], "\n")
		return "", fmt.Errorf("hostconfig: the systemd unit uses %q, which RenderSystemdUnit does not render; teach it (and keep it equal to kardianos/service's rendering)", line)
	}
	return out, nil
}

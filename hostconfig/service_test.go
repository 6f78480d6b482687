package hostconfig_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/hostconfig"
)

// TestRenderSystemdUnit: the unit the packages install is the template
// 'ringfenced install' hands kardianos/service, rendered as it renders it:
// the binary escaped (cmdEscape), each argument quoted (cmd), the root the
// one writable path.
func TestRenderSystemdUnit(t *testing.T) {
	unit, err := hostconfig.RenderSystemdUnit("/var/lib/ringfence", "/usr/bin/ringfenced", []string{"run", "--config", "/etc/ringfence/ringfenced.toml"})
	require.NoError(t, err)
	for _, want := range []string{
		"Description=" + hostconfig.ServiceDescription,
		"ConditionFileIsExecutable=/usr/bin/ringfenced",
		`ExecStart=/usr/bin/ringfenced "run" "--config" "/etc/ringfence/ringfenced.toml"`,
		"ReadWritePaths=/var/lib/ringfence",
		"Restart=on-failure", "RestartSec=2", "ProtectSystem=strict", "NoNewPrivileges=yes",
		"WantedBy=multi-user.target",
	} {
		require.Contains(t, unit, want+"\n")
	}
	require.NotContains(t, unit, "{{")
	require.NotContains(t, unit, "ROOT")

	unit, err = hostconfig.RenderSystemdUnit("/srv/rf root", "/opt/my agent/ringfenced", []string{`say "hi"`})
	require.NoError(t, err)
	require.Contains(t, unit, `ExecStart=/opt/my\x20agent/ringfenced "say \"hi\""`+"\n")
	require.Contains(t, unit, "ReadWritePaths=/srv/rf root\n")

	tmpl := hostconfig.SystemdUnitTemplate("/var/lib/ringfence")
	require.Contains(t, tmpl, "ExecStart={{Path | cmdEscape}}{{range Arguments}} {{. | cmd}}{{end}}\n", "kardianos/service fills in the binary and arguments")
	require.Equal(t, strings.Count(tmpl, "\n"), strings.Count(unit, "\n"))
}

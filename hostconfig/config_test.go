package hostconfig_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/testtmp"
)

// base is a valid configuration; cases append to it or replace a line.
const base = `root = "root"
repository = "https://updates.example.com/repo"
trusted_root = "root.json"
channel = 291
`

func dir(t *testing.T) string {
	t.Helper()
	d := testtmp.Dir(t)
	require.NoError(t, os.WriteFile(filepath.Join(d, "root.json"), []byte("{}"), 0o600))
	return d
}

func TestParseDefaults(t *testing.T) {
	d := dir(t)
	c, err := hostconfig.Parse([]byte(base), d)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(d, "root"), c.Root, "relative paths are taken from the file's directory")
	require.Equal(t, filepath.Join(d, "root.json"), c.TrustedRoot)
	require.Equal(t, 5*time.Minute, c.PollInterval.Duration)
	require.Equal(t, 10*time.Minute, c.HealthWindow.Duration)
	require.Equal(t, uint8(2), c.Tries)
	require.Equal(t, hostconfig.RingsDefault, c.Rings)
	require.Empty(t, c.HostTags())
}

func TestParseFull(t *testing.T) {
	d := dir(t)
	c, err := hostconfig.Parse([]byte(base+`poll_interval = "30s"
poll_jitter = "5s"
pin = 1001
n_minus_1 = true
rings = "early"
tags = ["lab"]
health_window = "2m"
tries = 3
load_tries = 2
log_level = "debug"
log_format = "json"

[agent]
command = ["/opt/vendor/agent", "--fast"]
preflight_command = ["/opt/vendor/agent", "preflight"]
preflight_timeout = "1m"
start_timeout = "20s"
restart_delay = "500ms"

[telemetry]
endpoint = "https://rollout.example.com"
interval = "2m"
`), d)
	require.NoError(t, err)
	require.Equal(t, uint32(1001), c.Pin)
	require.True(t, c.NMinus1)
	require.Equal(t, []string{"lab", hostconfig.EarlyTag}, c.HostTags())
	require.Equal(t, []string{"/opt/vendor/agent", "--fast"}, c.Agent.Command)
	require.Equal(t, 500*time.Millisecond, c.Agent.RestartDelay.Duration)
	require.Equal(t, "https://rollout.example.com", c.Telemetry.Endpoint)
	require.Equal(t, uint8(3), c.Tries)
	require.Equal(t, "json", c.LogFormat)
}

// TestParseErrors: every mistake is an error at start-up that names the key.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, extra, want string }{
		{"typo", `pol_interval = "1m"`, "unknown key pol_interval"},
		{"nested typo", "[agent]\ncomand = [\"x\"]", "unknown key agent.comand"},
		{"duration", `poll_interval = "5 minutes"`, `not a duration`},
		{"short poll", `poll_interval = "10ms"`, "poll_interval"},
		{"rings", `rings = "first"`, "rings"},
		{"tries", `tries = 0`, "tries"},
		{"tries range", `tries = 300`, "tries"},
		{"log level", `log_level = "loud"`, "log_level"},
		{"log format", `log_format = "xml"`, "log_format"},
		{"endpoint", "[telemetry]\nendpoint = \"ftp://x\"", "telemetry.endpoint"},
		{"syntax", `poll_interval = `, "line 5"},
		{"type", `channel = "291"`, "channel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := base + tc.extra + "\n"
			if tc.name == "type" {
				src = `root = "r"
repository = "https://x/"
trusted_root = "root.json"
` + tc.extra + "\n"
			}
			_, err := hostconfig.Parse([]byte(src), dir(t))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
	for _, tc := range []struct{ name, src, want string }{
		{"no repository", "root = \"r\"\ntrusted_root = \"root.json\"\nchannel = 1\n", "repository"},
		{"no channel", "root = \"r\"\nrepository = \"https://x/\"\ntrusted_root = \"root.json\"\n", "channel"},
		{"missing trusted root", "root = \"r\"\nrepository = \"https://x/\"\ntrusted_root = \"nope.json\"\nchannel = 1\n", "trusted_root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := hostconfig.Parse([]byte(tc.src), dir(t))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestLoad(t *testing.T) {
	d := dir(t)
	p := filepath.Join(d, "ringfenced.toml")
	require.NoError(t, os.WriteFile(p, []byte(base), 0o600))
	c, err := hostconfig.Load(p)
	require.NoError(t, err)
	require.Equal(t, uint32(291), c.Channel)

	_, err = hostconfig.Load(filepath.Join(d, "missing.toml"))
	require.ErrorContains(t, err, "--config")

	require.NoError(t, os.WriteFile(p, make([]byte, hostconfig.MaxSize+1), 0o600))
	_, err = hostconfig.Load(p)
	require.ErrorContains(t, err, "larger than")
}

// TestChannels: several channels, a pin each; the older single channel;
// the mistakes a newcomer makes, each named.
func TestChannels(t *testing.T) {
	head := "root = \"r\"\nrepository = \"https://x/\"\ntrusted_root = \"root.json\"\n"
	c, err := hostconfig.Parse([]byte(head+"channels = [292, 291]\n[pins]\n292 = 2001\n"), dir(t))
	require.NoError(t, err)
	require.Equal(t, []uint32{291, 292}, c.Followed(), "ascending: the loader's order")
	require.Equal(t, uint32(2001), c.PinFor(292))
	require.Equal(t, uint32(0), c.PinFor(291))
	c, err = hostconfig.Parse([]byte(head+"channel = 291\npin = 1001\n"), dir(t))
	require.NoError(t, err)
	require.Equal(t, []uint32{291}, c.Followed())
	require.Equal(t, uint32(1001), c.PinFor(291))
	for _, tc := range []struct{ name, src, want string }{
		{"both spellings", "channel = 291\nchannels = [292]\n", "set one of the two"},
		{"channel zero", "channels = [291, 0]\n", "0 is not a channel"},
		{"twice", "channels = [291, 291]\n", "291 is listed twice"},
		{"one pin for several", "channels = [291, 292]\npin = 1001\n", "pin each under [pins]"},
		{"a pin for a channel not followed", "channels = [291]\n[pins]\n7 = 1\n", `pins: "7" is not a channel this host follows`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := hostconfig.Parse([]byte(head+tc.src), dir(t))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestMetricsListen: /metrics is off unless metrics_listen names an
// address and a port; an address that serves every interface is said
// outright, never implied by a bare port.
func TestMetricsListen(t *testing.T) {
	c, err := hostconfig.Parse([]byte(base), dir(t))
	require.NoError(t, err)
	require.Empty(t, c.MetricsListen, "off by default")
	for _, tc := range []struct {
		addr     string
		loopback bool
		want     string // the error, "" for none
	}{
		{"127.0.0.1:9464", true, ""},
		{"[::1]:9464", true, ""},
		{"localhost:9464", true, ""},
		{"127.0.0.1:0", true, ""},
		{"0.0.0.0:9464", false, ""},
		{"10.1.2.3:9464", false, ""},
		{":9464", false, `names no address, which would serve every interface; write "127.0.0.1:9464"`},
		{"9464", false, "is not HOST:PORT"},
		{"127.0.0.1:http", false, "is not a number"},
		{"127.0.0.1:70000", false, "is not a number"},
		{"metrics.example.com:9464", false, "is not an IP address"},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			c, err := hostconfig.Parse([]byte(base+"metrics_listen = \""+tc.addr+"\"\n"), dir(t))
			if tc.want != "" {
				require.ErrorContains(t, err, "metrics_listen: ")
				require.ErrorContains(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.addr, c.MetricsListen)
			require.Equal(t, tc.loopback, c.MetricsLoopback())
		})
	}
}

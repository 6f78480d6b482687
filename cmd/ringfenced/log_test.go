package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/cli"
	"github.com/ringfence/ringfence/internal/testtmp"
)

// failingConfig writes a configuration that loads but whose root is a
// file, so `ringfenced run` logs why it stopped and exits at once.
func failingConfig(t *testing.T, extra string) string {
	t.Helper()
	d := testtmp.Dir(t)
	root := filepath.Join(d, "root-is-a-file")
	require.NoError(t, os.WriteFile(root, nil, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(d, "root.json"), []byte("{}"), 0o600))
	cfg := filepath.Join(d, "ringfenced.toml")
	require.NoError(t, os.WriteFile(cfg, []byte(`root = "root-is-a-file"
repository = "https://repo.example.com/"
trusted_root = "root.json"
channels = [291]
`+extra), 0o600))
	return cfg
}

// TestRunLogsJSON: `run --log-format json`, or log_format = "json", logs
// one JSON object a line on stderr (slog's keys: time, level, msg, then the
// attributes); the flag overrides the configuration.
func TestRunLogsJSON(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		args        []string
		json        bool
	}{
		{"flag", "", []string{"--log-format", "json"}, true},
		{"config", `log_format = "json"`, nil, true},
		{"flag over config", `log_format = "json"`, []string{"--log-format", "text"}, false},
		{"default", "", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"run", "--config", failingConfig(t, tc.extra)}, tc.args...), &out, &errb)
			require.Equal(t, cli.ExitRejected, code, errb.String())
			lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
			require.Len(t, lines, 1, errb.String())
			var rec map[string]any
			err := json.Unmarshal([]byte(lines[0]), &rec)
			if !tc.json {
				require.Error(t, err, "text, not JSON: %s", lines[0])
				require.Contains(t, lines[0], `level=ERROR msg="ringfenced stopped"`)
				return
			}
			require.NoError(t, err, lines[0])
			require.Equal(t, "ERROR", rec["level"])
			require.Equal(t, "ringfenced stopped", rec["msg"])
			require.Contains(t, rec["err"], "root-is-a-file")
			require.NotEmpty(t, rec["time"])
		})
	}
}

func TestRunLogFormatUsage(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"run", "--config", failingConfig(t, ""), "--log-format", "xml"}, &out, &errb)
	require.Equal(t, cli.ExitUsage, code)
	require.Contains(t, errb.String(), "want text or json")
}

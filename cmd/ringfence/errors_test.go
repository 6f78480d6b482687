package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestErrorsSayWhatToDo runs the host commands with wrong input, as a
// newcomer would: each error says what was wrong and what to do.
func TestErrorsSayWhatToDo(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "typo")
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.Mkdir(empty, 0o700))
	notJSON := td("channels", "good-ipc-1001.rfch")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"install on a root that is not there", []string{"install", "--root", missing, td("channels", "good-ipc-1001.rfch")}, exitUsage,
			"root directory " + missing + ": file does not exist; check the path, or create it for a new host (mkdir -m 700 " + missing + ")"},
		{"boot too", []string{"boot", "--root", missing}, exitUsage, "check the path, or create it for a new host"},
		{"status", []string{"status", "--root", missing}, exitUsage, "pass the host's Ringfence directory as --root (the default is "},
		{"mark-good with no trial", []string{"mark-good", "--root", empty}, exitRejected, "the root holds no channel yet: nothing to mark good ('ringfence status' shows the channels)"},
		{"recover to a version no slot has", []string{"recover", "--root", empty, "--to", "5"}, exitRejected, "the root holds no channel yet: no version 5 to go to ('ringfence status' shows the channels)"},
		{"a channel the root does not hold", []string{"status", "--root", empty, "--channel", "7"}, exitUsage, "holds no channel 7 (it holds: none yet)"},
		{"fetch trusting nothing yet", []string{"fetch", "--root", empty, "--url", "http://127.0.0.1:1", "x"}, exitUsage,
			"this host trusts no repository yet (nothing in " + filepath.Join(empty, "tuf") + "): pass --trusted-root FILE, the repository's metadata/root.json, the first time"},
		{"fetch with a trusted root that is not there", []string{"fetch", "--root", empty, "--url", "http://127.0.0.1:1", "--trusted-root", missing, "x"}, exitUsage, "--trusted-root: open " + missing},
		{"fetch with a trusted root that is not one", []string{"fetch", "--root", empty, "--url", "http://127.0.0.1:1", "--trusted-root", notJSON, "x"}, exitRejected,
			"(is " + notJSON + " the repository's metadata/root.json?)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := runCLI(tc.args...)
			require.Equal(t, tc.code, code, errOut)
			require.Contains(t, errOut, tc.want)
			require.Equal(t, 1, strings.Count(errOut, "\n"), "one line:\n%s", errOut)
			_, err := os.Stat(missing)
			require.True(t, os.IsNotExist(err), "nothing was created at %s", missing)
		})
	}
}

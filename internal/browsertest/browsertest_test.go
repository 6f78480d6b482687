package browsertest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/testtmp"
)

func TestChromium(t *testing.T) {
	bin := testtmp.Dir(t)
	// Both names, so that LookPath finds one on Windows (.exe) and elsewhere.
	for _, name := range []string{"chromium-browser", "chromium-browser.exe"} {
		require.NoError(t, os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"), 0o755))
	}
	t.Setenv("PATH", bin)
	fake, err := exec.LookPath("chromium-browser")
	require.NoError(t, err)
	tests := []struct {
		name, env, path, want string
	}{
		{"env wins, unchecked", "/opt/chrome/chrome", bin, "/opt/chrome/chrome"},
		{"found on PATH", "", bin, fake},
		{"none", "", testtmp.Dir(t), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("RINGFENCE_CHROMIUM", tc.env)
			t.Setenv("PATH", tc.path)
			require.Equal(t, tc.want, Chromium())
		})
	}
}

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/daemon"
)

// TestHostCommands walks a host through the story with the CLI:
// install, a trial that crashes while loading, the fallback, status, and
// offline recovery.
func TestHostCommands(t *testing.T) {
	root := t.TempDir()
	good1 := td("channels", "good-ipc-1001.rfch")
	good2 := td("channels", "good-ipc-1002.rfch")

	out, errOut, code := runCLI("install", "--root", root, good1)
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "installed channel 291 version 1001 into slot a as TRIAL")
	_, errOut, code = runCLI("boot", "--root", root, "--loaded")
	require.Equal(t, exitOK, code, errOut)
	out, errOut, code = runCLI("mark-good", "--root", root)
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "slot a (channel 291 version 1001) is now last-known-good")

	out, errOut, code = runCLI("install", "--root", root, good2)
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "fallback slot a (channel 291 version 1001)")

	// Two boots in a row without --loaded: the second shows the fallback.
	out, _, code = runCLI("boot", "--root", root)
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "load slot b: channel 291 version 1002 (trial)")
	require.Contains(t, out, "breadcrumb LOADING")
	out, _, code = runCLI("boot", "--root", root, "--json")
	require.Equal(t, exitOK, code)
	var boot map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &boot), out)
	require.Equal(t, "load", boot["action"])
	require.Equal(t, "a", boot["slot"])
	require.Equal(t, float64(1001), boot["version"])
	require.Equal(t, "load-crash", boot["why"])
	require.Equal(t, "b", boot["reverted"])

	// Quarantined: refused with exit 1, unless overridden.
	_, errOut, code = runCLI("install", "--root", root, good2)
	require.Equal(t, exitRejected, code)
	require.Contains(t, errOut, "quarantined")

	out, _, code = runCLI("status", "--root", root, "--json")
	require.Equal(t, exitOK, code)
	var host struct {
		Channels []json.RawMessage `json:"channels"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &host), out)
	require.Len(t, host.Channels, 1)
	var st struct {
		Channel     uint32 `json:"channel"`
		RecordValid bool   `json:"record_valid"`
		Active      string `json:"active"`
		LastGood    string `json:"last_known_good"`
		Next        struct {
			Action  string `json:"action"`
			Version uint32 `json:"version"`
		} `json:"next_boot"`
		Slots []struct {
			Slot     string `json:"slot"`
			State    string `json:"state"`
			Reason   string `json:"reason"`
			Verified bool   `json:"verified"`
		} `json:"slots"`
		Quarantined []struct {
			Version uint32 `json:"version"`
		} `json:"quarantined"`
		History []struct {
			To string `json:"to"`
		} `json:"history"`
	}
	require.NoError(t, json.Unmarshal(host.Channels[0], &st), out)
	require.Equal(t, uint32(291), st.Channel)
	require.True(t, st.RecordValid)
	require.Equal(t, "a", st.Active)
	require.Equal(t, "a", st.LastGood)
	require.Equal(t, uint32(1001), st.Next.Version)
	require.Equal(t, "BAD", st.Slots[1].State)
	require.Equal(t, "load-crash", st.Slots[1].Reason)
	require.Len(t, st.Quarantined, 1)
	require.Equal(t, "BAD", st.History[0].To)

	out, _, code = runCLI("status", "--root", root)
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "next boot:       load slot a: channel 291 version 1001 (last-known-good)")

	// mark-good with no trial: exit 1 with the reason.
	_, errOut, code = runCLI("mark-good", "--root", root)
	require.Equal(t, exitRejected, code)
	require.Contains(t, errOut, "not on trial")
}

func TestRecoverCommand(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"good-ipc-1001.rfch", "good-ipc-1002.rfch"} {
		_, errOut, code := runCLI("install", "--root", root, "--no-preflight", td("channels", f))
		require.Equal(t, exitOK, code, errOut)
		_, _, code = runCLI("boot", "--root", root, "--loaded")
		require.Equal(t, exitOK, code)
		if f == "good-ipc-1001.rfch" {
			_, _, code = runCLI("mark-good", "--root", root)
			require.Equal(t, exitOK, code)
		}
	}
	// 1002 is on trial. A dry run changes nothing.
	rec := filepath.Join(root, "channels", "291", "bootrecord")
	before, err := os.ReadFile(rec)
	require.NoError(t, err)
	out, errOut, code := runCLI("recover", "--root", root, "--dry-run")
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "before: the next boot would load slot b: channel 291 version 1002 (trial)")
	require.Contains(t, out, "slot b (channel 291 version 1002, TRIAL) becomes BAD (recovered) and is quarantined")
	require.Contains(t, out, "after:  the next boot would load slot a: channel 291 version 1001 (last-known-good)")
	require.Contains(t, out, "dry run: nothing was changed")
	after, err := os.ReadFile(rec)
	require.NoError(t, err)
	require.Equal(t, before, after)

	out, errOut, code = runCLI("recover", "--root", root)
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "after:  the next boot will load slot a: channel 291 version 1001")
	r, err := bootguard.Read(rec)
	require.NoError(t, err)
	require.Equal(t, bootguard.SlotA, r.Active)

	// Both copies destroyed and state.db gone: rebuilt from the manifests.
	require.NoError(t, os.WriteFile(rec, make([]byte, bootguard.FileSize), 0o600))
	require.NoError(t, os.Remove(filepath.Join(root, "state.db")))
	out, _, _ = runCLI("status", "--root", root)
	require.Contains(t, out, "SAFE MODE")
	out, errOut, code = runCLI("recover", "--root", root)
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "the boot record has no valid copy: rebuilding it")
	require.Contains(t, out, "after:  the next boot will load slot a: channel 291 version 1001")

	_, errOut, code = runCLI("recover", "--root", root, "--to", "4242")
	require.Equal(t, exitRejected, code)
	require.Contains(t, errOut, "version 4242 is in neither slot")
	_, errOut, code = runCLI("recover", "--root", filepath.Join(root, "missing"))
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "mount the host's disk")
}

func TestInstallRejects(t *testing.T) {
	root := t.TempDir()
	_, errOut, code := runCLI("install", "--root", root, td("channels", "cf291-shape.rfch"))
	require.Equal(t, exitRejected, code)
	require.Contains(t, errOut, "FIELD_NOT_SUPPLIED: instance 1, field 21")
	require.Contains(t, errOut, "is invalid; nothing was changed")
	_, errOut, code = runCLI("install", "--root", root)
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "exactly one channel file")
	out, _, code := runCLI("recover", "--help")
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "offline recovery")
}

// TestHostCommandsChannels: a root of two channels. status shows both (or
// the one --channel names), boot goes through both in ascending order,
// recover to a version needs --channel.
func TestHostCommandsChannels(t *testing.T) {
	root := t.TempDir()
	src, err := os.ReadFile(td("channels", "src", "good-ipc-1001.json"))
	require.NoError(t, err)
	j := filepath.Join(t.TempDir(), "ch292.json")
	require.NoError(t, os.WriteFile(j, []byte(strings.Replace(strings.Replace(string(src), `"channel": 291`, `"channel": 292`, 1), `"content_version": 1001`, `"content_version": 2001`, 1)), 0o600))
	f292 := filepath.Join(t.TempDir(), "ch292.rfch")
	_, errOut, code := runCLI("channel", "build", "-o", f292, j)
	require.Equal(t, exitOK, code, errOut)
	for _, f := range []string{td("channels", "good-ipc-1001.rfch"), f292} {
		_, errOut, code := runCLI("install", "--root", root, "--no-preflight", f)
		require.Equal(t, exitOK, code, errOut)
		_, _, code = runCLI("boot", "--root", root, "--loaded")
		require.Equal(t, exitOK, code)
		_, errOut, code = runCLI("mark-good", "--root", root)
		require.Equal(t, exitOK, code, errOut)
	}
	out, _, code := runCLI("boot", "--root", root)
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "channel 291: load slot a: channel 291 version 1001 (last-known-good)\nchannel 292: load slot a: channel 292 version 2001 (last-known-good)")

	out, _, code = runCLI("status", "--root", root, "--json")
	require.Equal(t, exitOK, code)
	var st struct {
		Channels []struct {
			Channel uint32 `json:"channel"`
			History []struct {
				Channel uint32 `json:"channel"`
			} `json:"history"`
		} `json:"channels"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	require.Len(t, st.Channels, 2)
	for _, c := range st.Channels {
		require.NotEmpty(t, c.History)
		for _, h := range c.History {
			require.Equal(t, c.Channel, h.Channel, "each channel shows its own history")
		}
	}
	out, _, code = runCLI("status", "--root", root, "--channel", "292")
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "channel 292:")
	require.NotContains(t, out, "channel 291:")

	// A daemon that follows 291 only: status says 292 gets no updates.
	require.NoError(t, os.MkdirAll(filepath.Join(root, daemon.StatusDir), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(root, daemon.StatusDir, daemon.StatusName),
		[]byte(`{"host_id":"h-1","channels":[291],"agent":"running","running":"channel 291 version 1001 (GOOD)"}`), 0o600))
	out, _, code = runCLI("status", "--root", root)
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "channel 292:     not followed by the daemon: no updates, but the agent still loads what it holds")
	require.NotContains(t, out, "channel 291:     not followed")

	_, errOut, code = runCLI("recover", "--root", root, "--to", "1001")
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "pass --channel too (the root holds 291, 292)")
	out, errOut, code = runCLI("recover", "--root", root, "--channel", "291", "--to", "none")
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "the next boot will load no content")
	out, _, code = runCLI("boot", "--root", root)
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "channel 292: load slot a: channel 292 version 2001 (last-known-good)", "292 untouched")
}

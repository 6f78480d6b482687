package daemon_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/daemon"
)

// TestActionWords: a poll's action is written to the status file, and read
// by `ringfence status` and the lab, as these words; they do not change.
func TestActionWords(t *testing.T) {
	for _, tc := range []struct {
		action daemon.Action
		word   string
	}{
		{daemon.ActionNothing, "nothing"}, {daemon.ActionInstalled, "installed"}, {daemon.ActionReverted, "reverted"},
		{daemon.ActionRejected, "rejected"}, {daemon.ActionSkipped, "skipped"}, {daemon.ActionWaiting, "waiting"},
		{daemon.ActionDeferred, "deferred"}, {daemon.ActionFailed, "failed"}, {daemon.ActionSelfUpdated, "self-updated"},
	} {
		t.Run(tc.word, func(t *testing.T) {
			require.Equal(t, tc.word, tc.action.String())
			root := t.TempDir()
			require.NoError(t, os.MkdirAll(filepath.Join(root, daemon.StatusDir), 0o755))
			b, err := json.Marshal(daemon.Status{Poll: daemon.PollResult{Action: tc.action, Version: 1001}})
			require.NoError(t, err)
			var raw struct {
				Poll struct {
					Action string `json:"action"`
				} `json:"poll"`
			}
			require.NoError(t, json.Unmarshal(b, &raw))
			require.Equal(t, tc.word, raw.Poll.Action)
			require.NoError(t, os.WriteFile(filepath.Join(root, daemon.StatusDir, daemon.StatusName), b, 0o644))
			st, err := daemon.ReadStatus(root)
			require.NoError(t, err)
			require.Equal(t, tc.action, st.Poll.Action)
		})
	}
}

package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/fleetdb"
	"github.com/ringfence/ringfence/internal/testtmp"
)

// newState returns a state directory whose server.db holds one host.
func newState(t *testing.T) string {
	t.Helper()
	state := testtmp.Dir(t)
	db, err := fleetdb.Open(state, fleetdb.Options{Timeout: time.Second})
	require.NoError(t, err)
	h := &controller.Host{ID: "h-1", LastSeen: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	require.NoError(t, db.Commit(controller.Changes{Hosts: []*controller.Host{h}}, admission.Changes{}))
	require.NoError(t, db.Close())
	return state
}

// TestStateCommands: backup and check of a state directory no server runs on.
func TestStateCommands(t *testing.T) {
	state := newState(t)
	dir := testtmp.Dir(t)
	backup := filepath.Join(dir, "backup.db")
	good, err := os.ReadFile(filepath.Join(state, fleetdb.FileName))
	require.NoError(t, err)
	truncated := filepath.Join(dir, "truncated.db")
	require.NoError(t, os.WriteFile(truncated, good[:os.Getpagesize()*3/2], 0o600))
	empty := filepath.Join(dir, "empty.db")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))

	tests := []struct {
		name         string
		args         []string
		code         int
		stdout       []string
		stderr       []string
		backupExists bool // after the command
	}{
		{name: "backup needs --out", args: []string{"state", "backup", "--state", state}, code: 2, stderr: []string{"--out is required"}},
		{name: "backup needs a source", args: []string{"state", "backup", "--out", backup}, code: 2, stderr: []string{"give --server URL or --state DIR"}},
		{name: "backup over the database itself", args: []string{"state", "backup", "--state", state, "--out", filepath.Join(state, fleetdb.FileName)},
			code: 2, stderr: []string{"is the database itself"}},
		{name: "backup without a server", args: []string{"state", "backup", "--state", state, "--out", backup}, code: 0, backupExists: true,
			stdout: []string{"wrote " + backup, "bytes", filepath.Join(state, fleetdb.FileName) + " (no server running)"}},
		{name: "check the backup", args: []string{"state", "check", "--file", backup}, code: 0, backupExists: true, stdout: []string{"ok: " + backup + " is consistent"}},
		{name: "check the state", args: []string{"state", "check", "--state", state}, code: 0, backupExists: true, stdout: []string{"ok: "}},
		{name: "check a truncated file", args: []string{"state", "check", "--file", truncated}, code: 1, backupExists: true,
			stderr: []string{truncated, "truncated", "ringfence-server state backup", "ringfence-server serve --start-empty"}},
		{name: "check an empty file", args: []string{"state", "check", "--file", empty}, code: 1, backupExists: true,
			stderr: []string{empty, "empty", "--start-empty"}},
		{name: "check a missing file", args: []string{"state", "check", "--file", filepath.Join(dir, "nope.db")}, code: 2, backupExists: true, stderr: []string{"does not exist"}},
		{name: "check needs one source", args: []string{"state", "check"}, code: 2, backupExists: true, stderr: []string{"give one of --state DIR or --file FILE"}},
		{name: "backup of a damaged state", args: []string{"state", "backup", "--state", damagedState(t, good), "--out", filepath.Join(dir, "x.db")}, code: 2,
			backupExists: true, stderr: []string{"damaged database"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, tt.args...)
			require.Equal(t, tt.code, code, "stdout: %s\nstderr: %s", out, errOut)
			for _, s := range tt.stdout {
				require.Contains(t, out, s)
			}
			for _, s := range tt.stderr {
				require.Contains(t, errOut, s)
			}
			_, err := os.Stat(backup)
			require.Equal(t, tt.backupExists, err == nil, "%s exists: %v", backup, err)
		})
	}
	_, err = os.Stat(filepath.Join(dir, "x.db"))
	require.True(t, os.IsNotExist(err), "no backup of a damaged database")
}

func damagedState(t *testing.T, good []byte) string {
	t.Helper()
	state := testtmp.Dir(t)
	require.NoError(t, os.WriteFile(filepath.Join(state, fleetdb.FileName), good[:os.Getpagesize()*3/2], 0o600))
	return state
}

// TestStateBackupFromRunningServer: with a real serve process on the state
// directory, backup goes through its API, and check refuses the locked file.
func TestStateBackupFromRunningServer(t *testing.T) {
	repo, keys, state := testtmp.Dir(t), testtmp.Dir(t), newState(t)
	_, errOut, code := runCLI(t, "repo", "init", "--repo", repo, "--keys", keys)
	require.Equal(t, 0, code, errOut)
	url := startServe(t, repo, keys, state).url

	backup := filepath.Join(testtmp.Dir(t), "backup.db")
	out, errOut, code := runCLI(t, "state", "backup", "--state", state, "--out", backup)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "wrote "+backup)
	require.Contains(t, out, "the server at "+url)

	_, errOut, code = runCLI(t, "state", "check", "--state", state)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "in use by a running ringfence-server")

	out, errOut, code = runCLI(t, "state", "check", "--file", backup)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "ok: ")

	// The backup holds the server's state: the host stored before it ran.
	dir := testtmp.Dir(t)
	raw, err := os.ReadFile(backup)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, fleetdb.FileName), raw, 0o600))
	db, err := fleetdb.Open(dir, fleetdb.Options{Timeout: time.Second, ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	st, err := db.Load()
	require.NoError(t, err)
	require.Len(t, st.Hosts, 1)
	require.Equal(t, "h-1", st.Hosts[0].ID)
}

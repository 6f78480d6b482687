package server_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/fleetdb"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/server"
)

func TestStateBackup(t *testing.T) {
	l := newLab(t, server.Options{})
	_, _, err := l.client().Start(context.Background(), server.StartRequest{ActionRequest: server.ActionRequest{Who: "alice", Why: "weekly"}, Channel: 291, Version: 1002, From: 1001})
	require.NoError(t, err)

	tests := []struct {
		name   string
		client *server.Client
		code   int // 0: the backup arrives
		want   string
	}{
		{name: "with the operator token", client: l.client()},
		{name: "without it", client: &server.Client{URL: l.http.URL, Token: "wrong"}, code: http.StatusUnauthorized, want: "operator token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			n, err := tt.client.Backup(context.Background(), &buf)
			if tt.code != 0 {
				var apiErr *server.APIError
				require.ErrorAs(t, err, &apiErr)
				require.Equal(t, tt.code, apiErr.Code)
				require.Contains(t, apiErr.Msg, tt.want)
				require.Zero(t, buf.Len())
				return
			}
			require.NoError(t, err)
			require.Equal(t, int64(buf.Len()), n)

			// A decision after the backup is not in it.
			_, _, err = l.client().Act(context.Background(), 291, "pause", "bob", "look")
			require.NoError(t, err)

			dir := testtmp.Dir(t)
			require.NoError(t, os.WriteFile(filepath.Join(dir, fleetdb.FileName), buf.Bytes(), 0o600))
			db, err := fleetdb.Open(dir, fleetdb.Options{Timeout: time.Second})
			require.NoError(t, err, "the backup is a server.db")
			defer db.Close()
			st, err := db.Load()
			rollouts := st.Rollouts
			require.NoError(t, err)
			require.Len(t, rollouts, 1)
			require.Equal(t, uint32(1002), rollouts[0].To)
			require.Len(t, rollouts[0].Decisions, 1, "the start, not the pause")
		})
	}

	resp := get(t, l.http.URL+"/v1/state/backup", "Authorization", "Bearer "+l.srv.Token())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/octet-stream", resp.Header.Get("Content-Type"))
	require.Regexp(t, `^attachment; filename="server-\d{8}T\d{6}Z\.db"$`, resp.Header.Get("Content-Disposition"))
	require.NotEmpty(t, body(t, resp))
}

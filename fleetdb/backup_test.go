package fleetdb_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/fleetdb"
	"github.com/ringfence/ringfence/internal/testtmp"
)

var now = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func commitHost(t *testing.T, db *fleetdb.DB, id string) {
	t.Helper()
	h := &controller.Host{ID: id, LastSeen: now, Versions: map[uint32]uint32{291: 1001}}
	require.NoError(t, db.Commit(controller.Changes{Hosts: []*controller.Host{h}}, admission.Changes{}))
}

// hostIDs opens the database file at path as a state directory's server.db
// (a copy of it) and returns the ids of its hosts.
func hostIDs(t *testing.T, path string) []string {
	t.Helper()
	dir := testtmp.Dir(t)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, fleetdb.FileName), raw, 0o600))
	db, err := fleetdb.Open(dir, fleetdb.Options{Timeout: time.Second})
	require.NoError(t, err, "a backup is a server.db")
	defer db.Close()
	st, err := db.Load()
	hosts := st.Hosts
	require.NoError(t, err)
	var ids []string
	for _, h := range hosts {
		ids = append(ids, h.ID)
	}
	return ids
}

func TestBackup(t *testing.T) {
	tests := []struct {
		name   string
		backup func(t *testing.T, db *fleetdb.DB, path string) int64
	}{
		{name: "Backup to a writer", backup: func(t *testing.T, db *fleetdb.DB, path string) int64 {
			var buf bytes.Buffer
			n, err := db.Backup(&buf)
			require.NoError(t, err)
			require.Equal(t, int64(buf.Len()), n)
			require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o600))
			return n
		}},
		{name: "BackupFile", backup: func(t *testing.T, db *fleetdb.DB, path string) int64 {
			n, err := db.BackupFile(path)
			require.NoError(t, err)
			info, err := os.Stat(path)
			require.NoError(t, err)
			require.Equal(t, info.Size(), n)
			if runtime.GOOS != "windows" {
				require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
			}
			return n
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := fleetdb.Open(testtmp.Dir(t), fleetdb.Options{Timeout: time.Second})
			require.NoError(t, err)
			defer db.Close()
			commitHost(t, db, "before")
			path := filepath.Join(testtmp.Dir(t), "backup.db")
			require.Positive(t, tt.backup(t, db, path))
			commitHost(t, db, "after")

			require.NoError(t, fleetdb.CheckFile(path))
			require.Equal(t, []string{"before"}, hostIDs(t, path), "the backup has the commit made before it, not the one after")
		})
	}
}

// TestBackupWhileCommitting: backups taken while another goroutine commits
// are each consistent, and each holds a prefix of the commits.
func TestBackupWhileCommitting(t *testing.T) {
	db, err := fleetdb.Open(testtmp.Dir(t), fleetdb.Options{Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	const commits = 200
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() {
		for i := range commits {
			h := &controller.Host{ID: fmt.Sprintf("h-%03d", i), LastSeen: now}
			if err := db.Commit(controller.Changes{Hosts: []*controller.Host{h}}, admission.Changes{}); err != nil {
				errc <- err
				return
			}
		}
	})
	dir := testtmp.Dir(t)
	var paths []string
	for i := range 5 {
		path := filepath.Join(dir, fmt.Sprintf("backup-%d.db", i))
		_, err := db.BackupFile(path) // checks the copy before keeping it
		require.NoError(t, err)
		paths = append(paths, path)
	}
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
	for _, p := range paths {
		ids := hostIDs(t, p)
		for i, id := range ids {
			require.Equal(t, fmt.Sprintf("h-%03d", i), id, "a backup holds the first commits, without gaps")
		}
	}
}

func TestBackupFileRefuses(t *testing.T) {
	tests := []struct {
		name string
		path func(db *fleetdb.DB, dir string) string
		fill func(w io.Writer) (int64, error) // nil: db.BackupFile
		want string
	}{
		{name: "the database itself", path: func(db *fleetdb.DB, _ string) string { return db.Path() }, want: "is the database itself"},
		{name: "a copy that breaks off", path: func(_ *fleetdb.DB, dir string) string { return filepath.Join(dir, "b.db") },
			fill: func(w io.Writer) (int64, error) { return 0, errors.New("connection reset") }, want: "connection reset"},
		{name: "a copy that is not a database", path: func(_ *fleetdb.DB, dir string) string { return filepath.Join(dir, "b.db") },
			fill: func(w io.Writer) (int64, error) {
				n, err := w.Write(bytes.Repeat([]byte{0xAA}, 1<<16))
				return int64(n), err
			}, want: "the backup failed its check"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := fleetdb.Open(testtmp.Dir(t), fleetdb.Options{Timeout: time.Second})
			require.NoError(t, err)
			defer db.Close()
			commitHost(t, db, "h-1")
			dir := testtmp.Dir(t)
			path := tt.path(db, dir)
			if tt.fill != nil {
				_, err := db.BackupFile(path) // a good backup already there
				require.NoError(t, err)
			}
			before, err := os.ReadFile(path)
			require.NoError(t, err)

			if tt.fill == nil {
				_, err = db.BackupFile(path)
			} else {
				_, err = fleetdb.SaveBackup(path, tt.fill)
			}
			require.ErrorContains(t, err, tt.want)
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			require.True(t, bytes.Equal(before, after), "%s is untouched", path)
			entries, err := os.ReadDir(filepath.Dir(path))
			require.NoError(t, err)
			for _, e := range entries {
				require.NotContains(t, e.Name(), ".tmp-", "no temporary file is left")
			}
		})
	}
}

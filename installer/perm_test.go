package installer_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/fileperm"
	"github.com/ringfence/ringfence/internal/testperm"
	"github.com/ringfence/ringfence/internal/testtmp"
)

var recordRel = filepath.Join(installer.ChannelsDir, "291", installer.RecordName)

// TestPerms: the daemon's open (StrictPerms) refuses a root, boot record or
// identity directory others can write, with the chmod that fixes it, and
// changes nothing; the offline tools' opens (plain, and read-only as
// 'ringfence status' does) warn the same words and keep working.
func TestPerms(t *testing.T) {
	tests := []struct {
		name string
		path string // relative to the root; "." is the root
		mode fs.FileMode
		want string // "<what> <path> is <how> (mode <mode>)"; "" accepts
		fix  string // the chmod advised
	}{
		{"root 0700", ".", 0o700, "", ""},
		{"root 0750", ".", 0o750, "", ""},
		{"root 0770", ".", 0o770, "root directory %s is group-writable (mode 0770)", "chmod 700 %s"},
		{"root 0777", ".", 0o777, "root directory %s is world-writable (mode 0777)", "chmod 700 %s"},
		{"boot record 0600", recordRel, 0o600, "", ""},
		{"boot record 0644", recordRel, 0o644, "", ""},
		{"boot record 0666", recordRel, 0o666, "boot record of channel 291 %s is world-writable (mode 0666)", "chmod 600 %s"},
		{"channels 0777", installer.ChannelsDir, 0o777, "channels directory %s is world-writable (mode 0777)", "chmod 700 %s"},
		{"identity 0700", installer.IdentityDir, 0o700, "", ""},
		{"identity 0777", installer.IdentityDir, 0o777, "identity directory %s is world-writable (mode 0777)", "chmod 700 %s"},
	}
	modes := []struct {
		name             string
		strict, readOnly bool
	}{
		{"daemon", true, false},
		{"offline", false, false},
		{"status", false, true},
	}
	for _, tc := range tests {
		for _, m := range modes {
			t.Run(tc.name+"/"+m.name, func(t *testing.T) {
				// A host that has run: content installed, a host key.
				root := testtmp.Dir(t)
				in := open(t, root)
				goodOn(t, in, "good-ipc-1001")
				require.NoError(t, in.Close())
				require.NoError(t, os.Mkdir(filepath.Join(root, installer.IdentityDir), 0o700))
				record := filepath.Join(root, installer.ChannelsDir, "291", installer.RecordName)
				before, err := os.ReadFile(record)
				require.NoError(t, err)
				path := filepath.Join(root, tc.path)
				testperm.Chmod(t, path, tc.mode)

				in, err = installer.Open(root, installer.Options{
					Capabilities: capabilities(t),
					Clock:        clock.NewFake(epoch),
					ReadOnly:     m.readOnly,
					StrictPerms:  m.strict,
				})
				want, fix := fmt.Sprintf(tc.want, filepath.Clean(path)), fmt.Sprintf(tc.fix, filepath.Clean(path))
				if tc.want != "" && m.strict {
					require.ErrorIs(t, err, fileperm.ErrTooOpen)
					require.Nil(t, in)
					require.Contains(t, err.Error(), "installer: "+want)
					require.Contains(t, err.Error(), "run '"+fix+"'")
					after, err := os.ReadFile(record)
					require.NoError(t, err)
					require.Equal(t, before, after, "a refused open must not touch the boot record")
					return
				}
				require.NoError(t, err)
				defer in.Close()
				var permWarnings []string
				for _, w := range in.Warnings() {
					if strings.Contains(w, "chmod") {
						permWarnings = append(permWarnings, w)
					}
				}
				if tc.want == "" {
					require.Empty(t, permWarnings)
				} else {
					require.Len(t, permWarnings, 1)
					require.Contains(t, permWarnings[0], want)
					require.Contains(t, permWarnings[0], "run '"+fix+"'")
					require.Contains(t, permWarnings[0], "ringfenced refuses to start")
					require.Contains(t, in.Status().Warnings, permWarnings[0])
				}
				// It works: status reads the record, and a writable open
				// installs.
				require.Equal(t, "a", in.Status().Active)
				if !m.readOnly {
					_, rec, err := in.Install(content(t, "good-ipc-1002"), installer.StageOptions{})
					require.NoError(t, err)
					require.Equal(t, uint32(1002), rec.Entry(rec.Active).Version)
				}
			})
		}
	}
}

// TestStrictPermsFreshRoot: the daemon's first start on an empty root opens
// it, and what Open creates passes the daemon's own check.
func TestStrictPermsFreshRoot(t *testing.T) {
	root := testtmp.Dir(t)
	in, err := installer.Open(root, installer.Options{Capabilities: capabilities(t), StrictPerms: true})
	require.NoError(t, err)
	require.NoError(t, in.Close())
	in, err = installer.Open(root, installer.Options{Capabilities: capabilities(t), StrictPerms: true})
	require.NoError(t, err)
	require.NoError(t, in.Close())
}

package validator

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/internal/testtmp"
)

func TestReadFile(t *testing.T) {
	dir := testtmp.Dir(t)
	for _, tc := range []struct {
		name string
		size int64
		err  string
	}{
		{"at the limit", MaxFileSize, ""},
		{"over the limit", MaxFileSize + 1, "is larger than the limit of 33554432 bytes (32 MiB), the most a channel file can be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "f.rfch")
			require.NoError(t, os.WriteFile(p, nil, 0o600))
			require.NoError(t, os.Truncate(p, tc.size))
			b, err := ReadFile(p)
			if tc.err == "" {
				require.NoError(t, err)
				require.Len(t, b, int(tc.size))
				return
			}
			require.ErrorIs(t, err, boundedio.ErrTooLarge)
			require.ErrorContains(t, err, p+" "+tc.err)
			require.Nil(t, b, "a larger file is refused, never truncated")
		})
	}
	_, err := ReadFile(filepath.Join(dir, "missing.rfch"))
	require.ErrorIs(t, err, fs.ErrNotExist)
}

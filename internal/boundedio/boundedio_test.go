package boundedio_test

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
	p := filepath.Join(dir, "f")
	require.NoError(t, os.WriteFile(p, []byte("12345"), 0o600))
	b, err := boundedio.ReadFile(p, 5)
	require.NoError(t, err)
	require.Equal(t, "12345", string(b))
	_, err = boundedio.ReadFile(p, 4)
	require.ErrorIs(t, err, boundedio.ErrTooLarge)
	require.ErrorContains(t, err, "is larger than the limit of 4 bytes")
	_, err = boundedio.ReadFile(filepath.Join(dir, "missing"), 4)
	require.ErrorIs(t, err, fs.ErrNotExist)
}

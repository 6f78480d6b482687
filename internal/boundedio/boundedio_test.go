package boundedio_test

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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
	require.ErrorContains(t, err, p+" is larger than the limit of 4 bytes")
	_, err = boundedio.ReadFile(filepath.Join(dir, "missing"), 4)
	require.ErrorIs(t, err, fs.ErrNotExist)
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

type failingReader struct{}

var errRead = errors.New("connection reset")

func (failingReader) Read([]byte) (int, error) { return 0, errRead }

func TestReadAll(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    string
		limit int64
		want  string
		err   string
	}{
		{"empty", "", 0, "", ""},
		{"under the limit", "123", 5, "123", ""},
		{"at the limit", "12345", 5, "12345", ""},
		{"one over", "123456", 5, "", "larger than the limit of 5 bytes"},
		{"far over", strings.Repeat("x", 1<<20), 5, "", "larger than the limit of 5 bytes"},
		{"zero limit", "1", 0, "", "larger than the limit of 0 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cr := &countingReader{r: strings.NewReader(tc.in)}
			b, err := boundedio.ReadAll(cr, tc.limit)
			require.LessOrEqual(t, int64(cr.n), tc.limit+1, "reads at most limit+1 bytes")
			if tc.err != "" {
				require.ErrorIs(t, err, boundedio.ErrTooLarge)
				require.EqualError(t, err, tc.err)
				require.Nil(t, b, "never a truncated read")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, string(b))
		})
	}
	t.Run("read error", func(t *testing.T) {
		_, err := boundedio.ReadAll(failingReader{}, 5)
		require.ErrorIs(t, err, errRead)
		require.NotErrorIs(t, err, boundedio.ErrTooLarge)
	})
}

package cli_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/cli"
)

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		name         string
		args         []string
		code         int
		ok           bool
		stdout       int // times the usage is printed
		stderr       int
		pos          []string
		errorMessage string
	}{
		{"help to stdout, once", []string{"--help"}, cli.ExitOK, false, 1, 0, nil, ""},
		{"bad flag to stderr, once", []string{"--bogus"}, cli.ExitUsage, false, 0, 1, nil, "flag provided but not defined: -bogus"},
		{"flags anywhere", []string{"a", "--n", "3", "b", "--", "--n"}, 0, true, 0, 0, []string{"a", "b", "--n"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			fs := cli.NewFlags("prog", "cmd", "cmd [flags]", "Does things.", &out, &errb)
			fs.Int("n", 0, "a number")
			pos, code, ok := cli.ParseArgs(fs, tc.args, &out)
			require.Equal(t, tc.code, code)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.pos, pos)
			require.Equal(t, tc.stdout, strings.Count(out.String(), "Usage: prog cmd [flags]"))
			require.Equal(t, tc.stderr, strings.Count(errb.String(), "Usage: prog cmd [flags]"))
			require.Contains(t, errb.String(), tc.errorMessage)
		})
	}
}

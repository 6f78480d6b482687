package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/compat"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/tufrepo"
)

// TestPublishMatrix: publish checks content against every sensor version
// of the matrix and signs what it found into the target: refused by some,
// a constraint naming the others; refused by all, nothing.
func TestPublishMatrix(t *testing.T) {
	repo, keys := testtmp.Dir(t), testtmp.Dir(t)
	_, errOut, code := runCLI(t, "repo", "init", "--repo", repo, "--keys", keys)
	require.Equal(t, 0, code, errOut)
	caps := func(v string) string { return td("capabilities", "sensor-"+v+".json") }
	publish := func(file string, args ...string) (string, string, int) {
		return runCLI(t, append(append([]string{"publish", "--repo", repo, "--keys", keys, "--channel", "291"}, args...), td("channels", file))...)
	}
	constraint := func(v uint32) compat.Constraint {
		r, err := tufrepo.Open(repo, keys, nil)
		require.NoError(t, err)
		c, err := r.Constraint(291, v)
		require.NoError(t, err)
		return c
	}

	out, errOut, code := publish("cf291-shape.rfch", "--matrix", td("capabilities"))
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "sensor 7.11: refused by validation (FIELD_NOT_SUPPLIED)\n"+
		"sensor 7.12: ok (validated, preflight passed)\n"+
		"published channels/291/1004.rfch (257 bytes) for sensor 7.12 only; excludes 7.11 (FIELD_NOT_SUPPLIED): hosts of other sensors never get it; content, snapshot and timestamp re-signed\n", out)
	require.Contains(t, errOut, "cf291-shape.rfch [sensor 7.11]: FIELD_NOT_SUPPLIED: instance 1, field 21", "the refusal's problems, named by sensor")
	require.Equal(t, compat.Constraint{Sensors: []string{"7.12"}, Excluded: map[string]string{"7.11": "FIELD_NOT_SUPPLIED"}}, constraint(1004))

	out, errOut, code = publish("good-ipc-1001.rfch", "--capabilities", caps("7.11"), "--capabilities", caps("7.12"))
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "published channels/291/1001.rfch (328 bytes) for any sensor")
	require.True(t, constraint(1001).Any())

	for _, tc := range []struct {
		name, file string
		args       []string
		code       int
		errOut     string
	}{
		{"one version, refused: as before the matrix", "cf291-shape.rfch", []string{"--capabilities", caps("7.11")}, 1,
			"cf291-shape.rfch is invalid; nothing was published"},
		{"refused by every version", "cf291-field22.rfch", []string{"--matrix", td("capabilities")}, 1,
			"is refused by every sensor version checked; nothing was published"},
		{"the same bytes for another constraint", "cf291-shape.rfch", []string{"--capabilities", caps("7.12")}, 1,
			"already published with another compatibility constraint"},
		{"two manifests, one version", "good-ipc-1002.rfch", []string{"--capabilities", caps("7.12"), "--matrix", td("capabilities")}, 2,
			"both claim sensor 7.12; keep one manifest per sensor version"},
		{"an empty matrix", "good-ipc-1002.rfch", []string{"--matrix", testtmp.Dir(t)}, 2, "holds no capability manifest"},
		{"a missing matrix", "good-ipc-1002.rfch", []string{"--matrix", td("no-such-dir")}, 2, "no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := publish(tc.file, tc.args...)
			require.Equal(t, tc.code, code, errOut)
			require.Contains(t, errOut, tc.errOut)
		})
	}
	r, err := tufrepo.Open(repo, keys, nil)
	require.NoError(t, err)
	_, err = r.Constraint(291, 1002)
	require.ErrorIs(t, err, tufrepo.ErrNotPublished, "no failed publish left anything behind")
}

package tufrepo_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/compat"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/tufrepo"
)

// tufJSDir returns the directory holding node_modules/tuf-js (RINGFENCE_TUFJS,
// made absolute). Without it, or without node, the test skips, or fails when
// RINGFENCE_REQUIRE_TUFJS=1 (make test-tufjs sets it, so that a missing
// client cannot pass silently).
func tufJSDir(t *testing.T) string {
	t.Helper()
	dir, msg := os.Getenv("RINGFENCE_TUFJS"), ""
	if dir == "" {
		msg = "RINGFENCE_TUFJS is not set"
	} else if _, err := os.Stat(filepath.Join(dir, "node_modules", "tuf-js")); err != nil {
		msg = fmt.Sprintf("no tuf-js in RINGFENCE_TUFJS (%v)", err)
	} else if _, err := exec.LookPath("node"); err != nil {
		msg = "no node on PATH"
	}
	if msg != "" {
		msg += "; 'make deps' installs tuf-js into bin/tufjs with npm, and 'make test-tufjs' runs this test with it"
		if os.Getenv("RINGFENCE_REQUIRE_TUFJS") == "1" {
			t.Fatal(msg + "; RINGFENCE_REQUIRE_TUFJS=1 forbids skipping")
		}
		t.Skip(msg)
	}
	abs, err := filepath.Abs(dir)
	require.NoError(t, err)
	return abs
}

// tufJSRun is one run of testdata/tufjs/client.mjs.
type tufJSRun struct {
	err            error  // from exec: nil when node exited 0
	stdout, stderr string // what the client printed
	metaDir        string // the client's metadata cache after the run
}

// runTufJS runs tuf-js against the repository served at base, trusting root,
// with fresh metadata and target directories, and asks it for names.
func runTufJS(t *testing.T, tufjs, base string, root []byte, names ...string) tufJSRun {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("testdata", "tufjs", "client.mjs"))
	require.NoError(t, err)
	metaDir, targetDir := t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(metaDir, "root.json"), root, 0o644))
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	args := append([]string{script, base + "/metadata/", base + "/targets/", metaDir, targetDir}, names...)
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Env = append(os.Environ(), "RINGFENCE_TUFJS="+tufjs)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	require.NoError(t, ctx.Err(), "tuf-js did not finish in time; stderr:\n%s", stderr.String())
	return tufJSRun{err: err, stdout: stdout.String(), stderr: stderr.String(), metaDir: metaDir}
}

// tufJSTarget is one line of the client's output.
type tufJSTarget struct {
	Name   string          `json:"name"`
	Path   string          `json:"path"`
	SHA256 string          `json:"sha256"`
	Custom json.RawMessage `json:"custom"`
}

func (r tufJSRun) targets(t *testing.T) []tufJSTarget {
	t.Helper()
	var out []tufJSTarget
	for line := range strings.Lines(r.stdout) {
		var tg tufJSTarget
		require.NoError(t, json.Unmarshal([]byte(line), &tg), "a line of tuf-js output: %q", line)
		out = append(out, tg)
	}
	return out
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestTufJSReadsRepository proves that a repository tufrepo makes is a TUF
// repository to a client that is not ours: tuf-js (the npm client, which the
// TUF conformance suite lists as passing) fetches it over HTTP on loopback,
// starting from the first root. On the way it walks a root chain (a rotated
// root key and a rotated targets key), verifies ed25519 and ECDSA P-256
// signatures, follows the content and rollout delegations, finds the
// hash-prefixed target files of consistent snapshots, and downloads exactly
// the published bytes. It refuses a tampered target and a root it does not
// trust.
func TestTufJSReadsRepository(t *testing.T) {
	tufjs := tufJSDir(t)

	dir := t.TempDir()
	repoDir, keys := filepath.Join(dir, "repo"), filepath.Join(dir, "keys")
	// tuf-js checks expiry against the wall clock, so sign with it.
	r, err := tufrepo.Init(repoDir, keys, tufrepo.InitOptions{Clock: clock.System{}})
	require.NoError(t, err)
	trusted, err := r.RootJSON() // version 1: what a host is installed with
	require.NoError(t, err)

	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "channels", name))
		require.NoError(t, err)
		return b
	}
	published := map[string][]byte{}
	publish := func(version uint32, file string) {
		data := read(file)
		name, err := r.Publish(291, version, data)
		require.NoError(t, err)
		published[name] = data
	}
	publish(1002, "good-ipc-1002.rfch")
	require.NoError(t, r.RotateKeys(tufrepo.RoleRoot, tufrepo.KeyEd25519))      // root v2
	require.NoError(t, r.RotateKeys(tufrepo.RoleTargets, tufrepo.KeyECDSAP256)) // root v3
	require.NoError(t, r.RotateKeys(tufrepo.RoleContent, tufrepo.KeyECDSAP256)) // targets' delegation
	require.NoError(t, r.RotateKeys(tufrepo.RoleRollout, tufrepo.KeyECDSAP256)) // targets' delegation
	publish(1003, "good-ipc-1003.rfch")
	// A version with a compatibility constraint in its custom metadata,
	// which tuf-js must read back as signed.
	only712 := compat.Constraint{Sensors: []string{"7.12"}, Excluded: map[string]string{"7.11": "FIELD_NOT_SUPPLIED"}}
	cf291 := read("cf291-shape.rfch")
	name, err := r.PublishFor(291, 1004, cf291, only712)
	require.NoError(t, err)
	published[name] = cf291
	plan := fmt.Appendf(nil, `{"format":%q,"channel":291,"stages":[{"name":"all","percent":100,"version":1003}]}`, rollout.Format)
	require.NoError(t, r.SetRollout(291, plan))
	published[rollout.RolloutTarget(291)] = plan

	// The repository is what the test means it to be: the client must walk
	// from root 1 to root 3, and the targets family is signed with ECDSA.
	latest, err := r.RootJSON()
	require.NoError(t, err)
	type rootMeta struct {
		Signed struct {
			Version int `json:"version"`
			Keys    map[string]struct {
				KeyType string `json:"keytype"`
			} `json:"keys"`
			Roles map[string]struct {
				KeyIDs []string `json:"keyids"`
			} `json:"roles"`
		} `json:"signed"`
	}
	var first, last rootMeta
	require.NoError(t, json.Unmarshal(trusted, &first))
	require.Equal(t, 1, first.Signed.Version)
	require.NoError(t, json.Unmarshal(latest, &last))
	require.Equal(t, 3, last.Signed.Version)
	for role, kt := range map[string]string{tufrepo.RoleRoot: "ed25519", tufrepo.RoleTargets: "ecdsa", tufrepo.RoleTimestamp: "ed25519"} {
		ids := last.Signed.Roles[role].KeyIDs
		require.Len(t, ids, 1, role)
		require.Equal(t, kt, last.Signed.Keys[ids[0]].KeyType, role)
	}
	require.NotEqual(t, first.Signed.Roles[tufrepo.RoleRoot].KeyIDs, last.Signed.Roles[tufrepo.RoleRoot].KeyIDs, "the root key was rotated")

	srv := httptest.NewServer(http.FileServer(http.Dir(repoDir)))
	t.Cleanup(srv.Close)

	names := []string{"channels/291/1002.rfch", "channels/291/1003.rfch", "channels/291/1004.rfch", rollout.RolloutTarget(291)}
	t.Run("reads", func(t *testing.T) {
		run := runTufJS(t, tufjs, srv.URL, trusted, names...)
		require.NoError(t, run.err, "tuf-js failed; stderr:\n%s", run.stderr)
		got := run.targets(t)
		require.Len(t, got, len(names), "stdout:\n%s", run.stdout)
		for i, g := range got {
			require.Equal(t, names[i], g.Name)
			want := published[g.Name]
			require.Equal(t, sha256Hex(want), g.SHA256, g.Name)
			b, err := os.ReadFile(g.Path)
			require.NoError(t, err)
			require.True(t, bytes.Equal(want, b), "%s: the file tuf-js wrote differs from the published bytes", g.Name)
			c, err := compat.Parse(g.Custom)
			require.NoError(t, err, "%s: the custom metadata tuf-js read: %s", g.Name, g.Custom)
			if g.Name == "channels/291/1004.rfch" {
				require.Equal(t, only712, c, "tuf-js reads the signed constraint back")
			} else {
				require.True(t, c.Any(), "%s has no constraint: %s", g.Name, g.Custom)
			}
		}
		// tuf-js keeps the newest root it trusts: it followed the chain.
		cached, err := os.ReadFile(filepath.Join(run.metaDir, "root.json"))
		require.NoError(t, err)
		require.Equal(t, string(latest), string(cached), "tuf-js did not end on root version 3")
		// and the targets it trusted delegate to ECDSA keys, so it
		// verified content and rollout with them.
		var targets struct {
			Signed struct {
				Delegations struct {
					Keys map[string]struct {
						KeyType string `json:"keytype"`
					} `json:"keys"`
				} `json:"delegations"`
			} `json:"signed"`
		}
		b, err := os.ReadFile(filepath.Join(run.metaDir, "targets.json"))
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, &targets))
		require.Len(t, targets.Signed.Delegations.Keys, 2)
		for id, k := range targets.Signed.Delegations.Keys {
			require.Equal(t, "ecdsa", k.KeyType, id)
		}
		for _, role := range []string{tufrepo.RoleContent, tufrepo.RoleRollout} {
			require.FileExists(t, filepath.Join(run.metaDir, role+".json"), "tuf-js loaded the %s delegation", role)
		}
	})

	t.Run("refuses a root it does not trust", func(t *testing.T) {
		other, err := tufrepo.Init(filepath.Join(dir, "other"), filepath.Join(dir, "other-keys"), tufrepo.InitOptions{Clock: clock.System{}})
		require.NoError(t, err)
		otherRoot, err := other.RootJSON()
		require.NoError(t, err)
		run := runTufJS(t, tufjs, srv.URL, otherRoot, names[0])
		var exit *exec.ExitError
		require.True(t, errors.As(run.err, &exit), "tuf-js accepted a repository its root did not sign (err %v); stdout:\n%s", run.err, run.stdout)
		t.Logf("tuf-js refused: %s", firstLine(run.stderr))
		require.Empty(t, run.stdout)
		require.Contains(t, run.stderr, "root was signed by", "the failure should be the root's signatures")
	})

	// Last: it changes the served repository.
	t.Run("refuses a tampered target", func(t *testing.T) {
		name := "channels/291/1003.rfch"
		good := published[name]
		file := filepath.Join(repoDir, "targets", "channels", "291", sha256Hex(good)+".1003.rfch")
		require.FileExists(t, file, "consistent snapshots: targets are stored as HASH.NAME")
		bad := bytes.Clone(good)
		bad[len(bad)/2] ^= 0xff // same length, other bytes
		require.NoError(t, os.WriteFile(file, bad, 0o644))

		run := runTufJS(t, tufjs, srv.URL, trusted, names[0], name)
		var exit *exec.ExitError
		require.True(t, errors.As(run.err, &exit), "tuf-js accepted a tampered target (err %v); stdout:\n%s", run.err, run.stdout)
		t.Logf("tuf-js refused: %s", firstLine(run.stderr))
		got := run.targets(t)
		require.Len(t, got, 1, "the untampered target comes first and is downloaded; stdout:\n%s", run.stdout)
		require.Equal(t, names[0], got[0].Name)
		require.Contains(t, run.stderr, sha256Hex(good), "the failure should be the hash of %s", name)
	})
}

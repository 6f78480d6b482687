package tuf_test

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/tuf"
)

// The spec tests hold the client to the TUF specification (section 5, the
// client workflow) on repositories made for each case by sim.

var bg = context.Background()

// trustedVersions reads every role file the client persisted and returns
// role file name -> version.
func trustedVersions(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "tuf"))
	require.NoError(t, err)
	out := map[string]int64{}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "tuf", e.Name()))
		require.NoError(t, err)
		var v struct {
			Signed struct {
				Version int64 `json:"version"`
			} `json:"signed"`
		}
		require.NoError(t, json.Unmarshal(b, &v), e.Name())
		out[strings.TrimSuffix(e.Name(), ".json")] = v.Signed.Version
	}
	return out
}

// graph builds the delegation graph of TestDelegationGraph:
//
//	targets -> A ("a/*")        -> A1 ("a/deep*")
//	        -> T ("t/*", terminating)
//	        -> C ("t/*", "c/*")
//	        -> D ("c/*")
//	        -> H ("h/*")         -> 16 hashed bins (succinct, TAP 15)
//	        -> P0..P3            classic hashed bins (path_hash_prefixes 0-3, 4-7, 8-b, c-f)
func graph(t *testing.T) *sim {
	s := newSim(t)
	s.delegate(metadata.TARGETS,
		delegation{name: "A", paths: []string{"a/*"}},
		delegation{name: "T", paths: []string{"t/*"}, terminating: true},
		delegation{name: "C", paths: []string{"t/*", "c/*"}},
		delegation{name: "D", paths: []string{"c/*"}},
		delegation{name: "H", paths: []string{"h/*"}})
	s.delegate("A", delegation{name: "A1", paths: []string{"a/deep*"}})
	for i, p := range []string{"0123", "4567", "89ab", "cdef"} {
		var prefixes []string
		for _, ch := range p {
			prefixes = append(prefixes, string(ch))
		}
		s.delegate(metadata.TARGETS, delegation{name: fmt.Sprintf("P%d", i), hashPrefixes: prefixes})
	}
	s.bins("H", "bin", 4)
	s.addTarget("targets", "top.txt", []byte("top"))
	s.addTarget("A", "a/one.txt", []byte("a one"))
	s.addTarget("A1", "a/deep-two.txt", []byte("a deep two"))
	s.addTarget("T", "t/held.txt", []byte("t held"))
	s.addTarget("C", "t/shadowed.txt", []byte("behind a terminating role"))
	s.addTarget("C", "c/first.txt", []byte("C's"))
	s.addTarget("D", "c/first.txt", []byte("D's"))
	s.addTarget("D", "c/only-d.txt", []byte("D only"))
	s.addTarget(s.binOf("H", "h/binned.txt"), "h/binned.txt", []byte("binned"))
	s.addTarget(prefixBin("p/hashed.txt"), "p/hashed.txt", []byte("by path hash"))
	s.publish()
	return s
}

// prefixBin names the classic hashed bin of graph that holds name.
func prefixBin(name string) string {
	d := hex.EncodeToString(sha256Of(name))[0]
	i := strings.IndexByte("0123456789abcdef", d) / 4
	return fmt.Sprintf("P%d", i)
}

// TestDelegationGraph: targets reached through nested, terminating and
// non-terminating delegations and hashed bins are found in the order the
// specification's preorder walk gives, by lookups after Refresh; every role
// a lookup loads is persisted, and a later client reuses it.
func TestDelegationGraph(t *testing.T) {
	s := graph(t)
	dir := testtmp.Dir(t)
	c := s.client(dir)
	require.NoError(t, c.Refresh(bg))
	bin := s.binOf("H", "h/binned.txt")
	for _, tc := range []struct {
		name, want string
		roles      []string // delegated roles the lookup loads
	}{
		{"top.txt", "top", nil},
		{"a/deep-two.txt", "a deep two", []string{"A", "A1"}},
		{"a/one.txt", "a one", nil},
		{"t/held.txt", "t held", []string{"T"}},
		{"c/first.txt", "C's", []string{"C"}}, // the first listed role that holds it
		{"c/only-d.txt", "D only", []string{"D"}},
		{"h/binned.txt", "binned", []string{"H", bin}},
		{"p/hashed.txt", "by path hash", pBins("p/hashed.txt")},
	} {
		s.takeRequests()
		p, err := c.Download(bg, tc.name)
		require.NoError(t, err, tc.name)
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		require.Equal(t, tc.want, string(b), tc.name)
		var fetched []string
		for _, r := range s.takeRequests() {
			if strings.HasPrefix(r, "metadata/") {
				fetched = append(fetched, r)
			}
		}
		var want []string
		for _, r := range tc.roles {
			want = append(want, fmt.Sprintf("metadata/%d.%s.json", s.targets[r].Signed.Version, r))
		}
		require.Equal(t, want, fetched, "%s: delegated metadata fetched, in the walk's order", tc.name)
	}
	// A terminating role that does not hold the target ends the search: C
	// (listed after T) is never asked for t/shadowed.txt.
	_, err := c.Download(bg, "t/shadowed.txt")
	require.ErrorIs(t, err, tuf.ErrNotFound)
	_, err = c.Download(bg, "nowhere/x.txt")
	require.ErrorIs(t, err, tuf.ErrNotFound)

	got := trustedVersions(t, dir)
	for _, r := range []string{"root", "timestamp", "snapshot", "targets", "A", "A1", "T", "C", "D", "H", bin, prefixBin("p/hashed.txt")} {
		want := map[string]int64{"root": 1, "timestamp": s.timestamp.Signed.Version, "snapshot": s.snapshot.Signed.Version}[r]
		if md := s.targets[r]; md != nil {
			want = md.Signed.Version
		}
		require.Equal(t, want, got[r], "%s persisted at its version (5.6.6)", r)
	}
	// A new process on the same root reuses what was persisted: its lookups
	// fetch no delegated metadata again.
	c2 := s.client(dir)
	require.NoError(t, c2.Refresh(bg))
	s.takeRequests()
	for _, n := range []string{"a/deep-two.txt", "h/binned.txt", "c/only-d.txt"} {
		_, err := c2.Target(bg, n)
		require.NoError(t, err, n)
	}
	require.Empty(t, s.takeRequests(), "persisted delegated metadata is trusted again, not fetched")
}

// pBins lists the classic bins a walk for name loads: those before its own
// (by order, none of which match) are skipped, so only its own.
func pBins(name string) []string { return []string{prefixBin(name)} }

// TestDelegationCycleAndBound: a cycle of delegations ends; a chain longer
// than MaxDelegations is not followed to its end.
func TestDelegationCycleAndBound(t *testing.T) {
	s := newSim(t)
	s.delegate(metadata.TARGETS, delegation{name: "X", paths: []string{"*"}})
	s.delegate("X", delegation{name: "Y", paths: []string{"*"}})
	// Y delegates back to X with X's key: a cycle.
	y := s.targets["Y"]
	x := s.targets[metadata.TARGETS].Signed.Delegations
	y.Signed.Delegations = &metadata.Delegations{Keys: x.Keys, Roles: []metadata.DelegatedRole{x.Roles[0]}}
	s.dirty["Y"] = true
	prev := "Y"
	for i := 0; i < tuf.MaxDelegations+2; i++ {
		name := fmt.Sprintf("chain%02d", i)
		s.delegate(prev, delegation{name: name, paths: []string{"*"}})
		prev = name
	}
	s.addTarget(prev, "deep.txt", []byte("too deep"))
	s.publish()
	c := s.client(testtmp.Dir(t))
	require.NoError(t, c.Refresh(bg))
	_, err := c.Target(bg, "deep.txt")
	require.ErrorIs(t, err, tuf.ErrNotFound)
	require.ErrorContains(t, err, fmt.Sprint(tuf.MaxDelegations))
}

// TestRefreshPersistsEachStep: a refresh that fails at a later step keeps
// every role that verified before it (5.3.8, 5.4.5, 5.5.7, 5.6.6), and the
// baseline it reached refuses a rollback afterwards.
func TestRefreshPersistsEachStep(t *testing.T) {
	for _, tc := range []struct {
		name string
		// break makes the repository's new state fail at one step.
		breakIt func(s *sim)
		err     error
		// kept: roles whose new version is persisted despite the failure.
		kept, old []string
	}{
		{"the new root expired (5.3.10)", func(s *sim) {
			s.rotateRoot(func(r *metadata.RootType) { r.Expires = t0.Add(-1) })
		}, tuf.ErrExpired, []string{"root"}, []string{"timestamp", "snapshot", "targets"}},
		{"the snapshot is missing", func(s *sim) {
			s.fail(fmt.Sprintf("metadata/%d.snapshot.json", s.snapshot.Signed.Version), http.StatusNotFound)
		}, tuf.ErrNotFound, []string{"root", "timestamp"}, []string{"snapshot", "targets"}},
		{"the snapshot expired", func(s *sim) {
			s.snapshot.Signed.Expires = t0.Add(-1)
			s.snapshot.Signed.Version++
			signWith(t, s.snapshot, s.keys["snapshot"])
			b, _ := s.snapshot.ToBytes(true)
			s.put(fmt.Sprintf("metadata/%d.snapshot.json", s.snapshot.Signed.Version), b)
			s.stamp()
		}, tuf.ErrExpired, []string{"root", "timestamp"}, []string{"snapshot", "targets"}},
		{"targets is missing", func(s *sim) {
			s.fail(fmt.Sprintf("metadata/%d.targets.json", s.targets["targets"].Signed.Version), http.StatusNotFound)
		}, tuf.ErrNotFound, []string{"root", "timestamp", "snapshot"}, []string{"targets"}},
		{"targets does not match the snapshot's hash", func(s *sim) {
			// The snapshot pins targets' hash; the mirror serves other bytes.
			tv := s.targets["targets"].Signed.Version
			good := s.files[fmt.Sprintf("metadata/%d.targets.json", tv)]
			sum := sha256.Sum256(good)
			s.snapshot.Signed.Meta["targets.json"].Hashes = metadata.Hashes{"sha256": sum[:]}
			s.snapshot.Signed.Meta["targets.json"].Length = int64(len(good))
			s.snapshot.Signed.Version++
			signWith(t, s.snapshot, s.keys["snapshot"])
			b, _ := s.snapshot.ToBytes(true)
			s.put(fmt.Sprintf("metadata/%d.snapshot.json", s.snapshot.Signed.Version), b)
			s.stamp()
			evil := []byte(strings.Replace(string(good), `"version"`, `"version" `, 1))
			s.put(fmt.Sprintf("metadata/%d.targets.json", tv), evil[:len(good)])
		}, tuf.ErrMismatch, []string{"root", "timestamp", "snapshot"}, []string{"targets"}},
		{"a delegated role is missing", func(s *sim) {
			s.fail(fmt.Sprintf("metadata/%d.content.json", s.targets["content"].Signed.Version), http.StatusNotFound)
		}, tuf.ErrNotFound, []string{"root", "timestamp", "snapshot", "targets"}, []string{"content"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t)
			s.delegate(metadata.TARGETS, delegation{name: "content", paths: []string{"channels/*/*"}, terminating: true})
			s.addTarget("content", "channels/291/1001.rfch", []byte("v1"))
			s.publish()
			dir := testtmp.Dir(t)
			c := s.client(dir)
			require.NoError(t, c.Refresh(bg))
			before := trustedVersions(t, dir)

			// The repository moves on: a new root, new content, new
			// targets, snapshot and timestamp; then one step breaks.
			s.rotateTopKey(metadata.TARGETS)
			s.addTarget("content", "channels/291/1002.rfch", []byte("v2"))
			s.dirty["targets"] = true
			s.publish()
			tc.breakIt(s)
			err := c.Refresh(bg)
			if err == nil {
				// content is loaded by the lookup that needs it
				_, err = c.Target(bg, "channels/291/1002.rfch")
			}
			require.ErrorIs(t, err, tc.err)
			after := trustedVersions(t, dir)
			for _, r := range tc.kept {
				require.Greater(t, after[r], before[r], "%s: verified before the failure, so persisted", r)
			}
			for _, r := range tc.old {
				require.Equal(t, before[r], after[r], "%s: not verified, so not persisted", r)
			}
			if !slices.Contains(tc.kept, "targets") {
				_, err = c.Target(bg, "channels/291/1001.rfch")
				require.Error(t, err, "no lookups in a failed refresh's metadata")
			}
		})
	}
}

// TestRollbackBaselineSurvivesFailedRefresh: the timestamp a failed refresh
// verified is the rollback baseline from then on: a mirror replaying the
// older one is refused.
func TestRollbackBaselineSurvivesFailedRefresh(t *testing.T) {
	s := newSim(t)
	s.publish()
	dir := testtmp.Dir(t)
	c := s.client(dir)
	require.NoError(t, c.Refresh(bg))
	oldTS := s.files["metadata/timestamp.json"]
	s.publish()
	s.fail(fmt.Sprintf("metadata/%d.snapshot.json", s.snapshot.Signed.Version), http.StatusServiceUnavailable)
	require.ErrorIs(t, c.Refresh(bg), tuf.ErrNetwork)
	s.fail(fmt.Sprintf("metadata/%d.snapshot.json", s.snapshot.Signed.Version), 0)
	s.put("metadata/timestamp.json", oldTS)
	require.ErrorIs(t, c.Refresh(bg), tuf.ErrRollback)
}

// TestRootRotationDropsKeysAtOnce: a new root that revokes a compromised
// timestamp key is trusted (and persisted) even though the rest of the
// refresh fails; the thief's timestamp is refused from then on, and the
// timestamp and snapshot the old keys signed are forgotten (5.3.11), so the
// repository can recover from a fast-forward.
func TestRootRotationDropsKeysAtOnce(t *testing.T) {
	s := newSim(t)
	s.publish()
	dir := testtmp.Dir(t)
	c := s.client(dir)
	require.NoError(t, c.Refresh(bg))
	stolen := s.keys[metadata.TIMESTAMP]
	// The thief fast-forwards the timestamp to version 1000.
	s.timestamp.Signed.Version = 999
	s.stamp()
	require.NoError(t, c.Refresh(bg))
	require.Equal(t, int64(1000), trustedVersions(t, dir)["timestamp"])

	// The vendor rotates the timestamp key; the snapshot is unreachable
	// in this refresh.
	s.rotateTopKey(metadata.TIMESTAMP)
	s.timestamp.Signed.Version = 0
	s.publish()
	s.fail(fmt.Sprintf("metadata/%d.snapshot.json", s.snapshot.Signed.Version), http.StatusNotFound)
	require.Error(t, c.Refresh(bg))
	got := trustedVersions(t, dir)
	require.Equal(t, int64(2), got["root"], "the new root is persisted at once")
	require.Equal(t, int64(1), got["timestamp"], "the timestamp the new key signed replaced the fast-forwarded one")
	_, snap := got["snapshot"]
	require.False(t, snap, "the snapshot the rotated key set vouched for is forgotten")

	// The thief's timestamp, signed by the revoked key, is refused.
	s.fail(fmt.Sprintf("metadata/%d.snapshot.json", s.snapshot.Signed.Version), 0)
	s.keys[metadata.TIMESTAMP], stolen = stolen, s.keys[metadata.TIMESTAMP]
	s.timestamp.Signed.Version = 2000
	s.stamp()
	require.ErrorIs(t, c.Refresh(bg), tuf.ErrBadSignature)
	s.keys[metadata.TIMESTAMP] = stolen
	s.timestamp.Signed.Version = 1
	s.stamp()
	require.NoError(t, c.Refresh(bg))
}

// TestRotatedDelegatedKey: a delegated role persisted under its old key is
// not trusted once its delegator rotated the key, even at the version the
// snapshot names.
func TestRotatedDelegatedKey(t *testing.T) {
	s := newSim(t)
	s.delegate(metadata.TARGETS, delegation{name: "A", paths: []string{"a/*"}})
	s.addTarget("A", "a/x.txt", []byte("x"))
	s.publish()
	dir := testtmp.Dir(t)
	c := s.client(dir)
	require.NoError(t, c.Refresh(bg))
	_, err := c.Target(bg, "a/x.txt")
	require.NoError(t, err)
	av := s.targets["A"].Signed.Version
	oldA := s.files[fmt.Sprintf("metadata/%d.A.json", av)]

	// targets re-delegates A to a new key; A is re-signed by it at the
	// same version (the snapshot names the same version of A).
	k := s.newKey()
	mk := pubKey(t, k)
	id := keyID(t, mk)
	d := s.targets[metadata.TARGETS].Signed.Delegations
	d.Keys[id] = mk
	d.Roles[0].KeyIDs = []string{id}
	s.dkeys["A"] = k
	s.putTargets("A")
	s.dirty[metadata.TARGETS] = true
	s.publish()
	require.Equal(t, av, s.targets["A"].Signed.Version)

	require.NoError(t, c.Refresh(bg))
	s.takeRequests()
	_, err = c.Target(bg, "a/x.txt")
	require.NoError(t, err)
	require.Contains(t, s.takeRequests(), fmt.Sprintf("metadata/%d.A.json", av), "the copy signed by the old key is not trusted: A is fetched again")

	// A mirror that serves the copy signed by the old key is refused.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tuf", "A.json"), oldA, 0o600))
	s.put(fmt.Sprintf("metadata/%d.A.json", av), oldA)
	c = s.client(dir)
	require.NoError(t, c.Refresh(bg))
	_, err = c.Target(bg, "a/x.txt")
	require.ErrorIs(t, err, tuf.ErrBadSignature)
}

// TestRoleTrustedThroughOneDelegatorOnly: role X is delegated by targets
// (key 1) and by Y (key 2); X is signed by key 1. Found through targets it
// is trusted; reached through Y, in the same session, it is not (go-tuf's
// updater returns a role it already loaded by name, whichever delegator
// asks for it).
func TestRoleTrustedThroughOneDelegatorOnly(t *testing.T) {
	s := newSim(t)
	s.delegate(metadata.TARGETS, delegation{name: "X", paths: []string{"x/*"}}, delegation{name: "Y", paths: []string{"y/*"}})
	xKey := s.dkeys["X"]
	s.delegate("Y", delegation{name: "X", paths: []string{"y/*"}}) // a fresh key for X under Y
	s.dkeys["X"] = xKey
	s.addTarget("X", "x/a.txt", []byte("a"))
	s.addTarget("X", "y/b.txt", []byte("b"))
	s.publish()
	c := s.client(testtmp.Dir(t))
	require.NoError(t, c.Refresh(bg))
	_, err := c.Target(bg, "x/a.txt")
	require.NoError(t, err)
	_, err = c.Target(bg, "y/b.txt")
	require.ErrorIs(t, err, tuf.ErrBadSignature)
}

// TestTargetHashes: a target may list sha512 only (or several hashes); every
// hash the client knows must match, and a target with none it knows is
// refused. Consistent-snapshot file names use a listed hash.
func TestTargetHashes(t *testing.T) {
	s := newSim(t)
	s.addTarget("targets", "only512.bin", []byte("sha512 only"), "sha512")
	s.addTarget("targets", "both.bin", []byte("two hashes"), "sha256", "sha512")
	s.addTarget("targets", "bad512.bin", []byte("the sha512 lies"), "sha256", "sha512")
	s.targets["targets"].Signed.Targets["bad512.bin"].Hashes["sha512"] = sha512Of("something else")
	s.addTarget("targets", "unknown.bin", []byte("md5"))
	tf := s.targets["targets"].Signed.Targets["unknown.bin"]
	tf.Hashes = metadata.Hashes{"blake2b-256": tf.Hashes["sha256"]}
	s.put("targets/"+hex.EncodeToString(tf.Hashes["blake2b-256"])+".unknown.bin", []byte("md5"))
	s.publish()
	dir := testtmp.Dir(t)
	c := s.client(dir)
	require.NoError(t, c.Refresh(bg))

	p, err := c.Download(bg, "only512.bin")
	require.NoError(t, err)
	b, _ := os.ReadFile(p)
	require.Equal(t, "sha512 only", string(b))
	s.takeRequests()
	_, err = c.Download(bg, "both.bin")
	require.NoError(t, err)
	reqs := s.takeRequests()
	require.Contains(t, reqs, "targets/"+hex.EncodeToString(sha256Of("two hashes"))+".both.bin", "sha256 names the file when listed")

	_, err = c.Download(bg, "bad512.bin")
	require.ErrorIs(t, err, tuf.ErrMismatch, "every known hash is checked, not the first")
	_, err = c.Download(bg, "unknown.bin")
	require.ErrorIs(t, err, tuf.ErrInvalid)
	require.ErrorContains(t, err, "no hash this client verifies")
	ents, _ := os.ReadDir(filepath.Join(dir, "downloads"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	require.Equal(t, []string{"both.bin", "only512.bin"}, names, "only verified files")
}

func sha256Of(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }
func sha512Of(s string) []byte { h := sha512.Sum512([]byte(s)); return h[:] }

// TestFailedDownloadLeavesOnlyVerifiedFiles: a 404, a 500 and a connection
// cut mid-file leave no file in the download directory; a cut leaves its
// bytes in the partial directory, from which the next attempt resumes.
func TestFailedDownloadLeavesOnlyVerifiedFiles(t *testing.T) {
	s := newSim(t)
	data := []byte(strings.Repeat("0123456789", 1000))
	s.addTarget("targets", "gone.bin", data)
	s.addTarget("targets", "flaky.bin", data)
	s.publish()
	dir := testtmp.Dir(t)
	partial := filepath.Join(dir, "partial")
	c := s.client(dir, func(o *tuf.Options) { o.PartialDir = partial })
	require.NoError(t, c.Refresh(bg))
	name := "targets/" + hex.EncodeToString(sha256Of(string(data)))
	s.fail(name+".gone.bin", http.StatusNotFound)
	_, err := c.Download(bg, "gone.bin")
	require.ErrorIs(t, err, tuf.ErrNotFound)
	s.fail(name+".flaky.bin", http.StatusInternalServerError)
	_, err = c.Download(bg, "flaky.bin")
	require.ErrorIs(t, err, tuf.ErrNetwork)
	require.Empty(t, listDir(t, filepath.Join(dir, "downloads")))
	require.Empty(t, listDir(t, partial), "nothing arrived, so no partial file")

	// 4000 bytes, then the connection drops.
	s.fail(name+".flaky.bin", 0)
	s.cutAfter(name+".flaky.bin", 4000)
	_, err = c.Download(bg, "flaky.bin")
	require.ErrorIs(t, err, tuf.ErrNetwork)
	require.Empty(t, listDir(t, filepath.Join(dir, "downloads")))
	require.Equal(t, []string{"flaky.bin.part"}, listDir(t, partial))
	fi, err := os.Stat(filepath.Join(partial, "flaky.bin.part"))
	require.NoError(t, err)
	require.Equal(t, int64(4000), fi.Size())
	s.cutAfter(name+".flaky.bin", 0)
	s.takeRequests()
	p, err := c.Download(bg, "flaky.bin")
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "downloads", "flaky.bin"), p)
	require.Equal(t, []string{"flaky.bin"}, listDir(t, filepath.Join(dir, "downloads")))
	require.Empty(t, listDir(t, partial))
	require.Equal(t, 1, s.ranges, "the second attempt resumed with a Range request")
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestRoleFileNames: delegated role names become file names that are safe
// on Linux and Windows and never collide with a top-level role's.
func TestRoleFileNames(t *testing.T) {
	s := newSim(t)
	odd := []string{"a/b", "..", "con", "Nul.x", "x:y", "100%"}
	var ds []delegation
	for i, n := range odd {
		ds = append(ds, delegation{name: n, paths: []string{fmt.Sprintf("p%d/*", i)}})
	}
	s.delegate(metadata.TARGETS, ds...)
	for i, n := range odd {
		s.addTarget(n, fmt.Sprintf("p%d/f", i), []byte(n))
	}
	s.publish()
	dir := testtmp.Dir(t)
	c := s.client(dir)
	require.NoError(t, c.Refresh(bg))
	for i, n := range odd {
		p, err := c.Download(bg, fmt.Sprintf("p%d/f", i))
		require.NoError(t, err, n)
		b, _ := os.ReadFile(p)
		require.Equal(t, n, string(b))
	}
	files := listDir(t, filepath.Join(dir, "tuf"))
	require.Len(t, files, 4+len(odd))
	for _, f := range files {
		base := strings.TrimSuffix(f, ".json")
		require.False(t, slices.Contains([]string{"", ".", ".."}, base), f)
		require.NotContains(t, f, "/")
		require.NotContains(t, f, ":")
		require.NotEqual(t, "con", strings.ToLower(base))
	}

	// A delegation named like a top-level role cannot be persisted apart
	// from it and is refused.
	s2 := newSim(t)
	s2.delegate(metadata.TARGETS, delegation{name: "timestamp", paths: []string{"*"}})
	s2.addTarget("timestamp", "f", []byte("f"))
	s2.publish()
	c2 := s2.client(testtmp.Dir(t))
	require.NoError(t, c2.Refresh(bg))
	_, err := c2.Target(bg, "f")
	require.ErrorIs(t, err, tuf.ErrInvalid)
}

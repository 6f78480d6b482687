package tuf_test

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/tuf"
)

// sim is a TUF repository built in memory for one case of the
// specification (any delegation graph, hashed bins, a role that fails to
// download), served over real HTTP on loopback with consistent snapshots.
// Unlike tufrepo, which makes the one layout Ringfence publishes, it can
// make every layout a vendor's own tooling could.
type sim struct {
	t     testing.TB
	clock *clock.Fake

	root      *metadata.Metadata[metadata.RootType]
	rootKeys  []crypto.Signer
	timestamp *metadata.Metadata[metadata.TimestampType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	targets   map[string]*metadata.Metadata[metadata.TargetsType] // "targets" and delegated roles
	keys      map[string]crypto.Signer                            // top-level role -> its signing key
	dkeys     map[string]crypto.Signer                            // delegated role -> its signing key
	dirty     map[string]bool                                     // roles changed since the last publish

	mu       sync.Mutex
	files    map[string][]byte // URL path under the server -> bytes
	override map[string]int    // URL path -> HTTP status to answer instead
	cut      map[string]int    // URL path -> bytes sent before the connection drops
	ranges   int               // Range requests served
	requests []string
	srv      *httptest.Server
}

func newSim(t testing.TB) *sim {
	t.Helper()
	s := &sim{t: t, clock: clock.NewFake(t0), targets: map[string]*metadata.Metadata[metadata.TargetsType]{},
		keys: map[string]crypto.Signer{}, dkeys: map[string]crypto.Signer{}, dirty: map[string]bool{}, files: map[string][]byte{}, override: map[string]int{}, cut: map[string]int{}}
	exp := t0.AddDate(1, 0, 0)
	s.root = metadata.Root(exp)
	s.root.Signed.ConsistentSnapshot = true
	rk := s.newKey()
	s.rootKeys = []crypto.Signer{rk}
	s.addRootKey(metadata.ROOT, rk)
	for _, role := range []string{metadata.TIMESTAMP, metadata.SNAPSHOT, metadata.TARGETS} {
		k := s.newKey()
		s.keys[role] = k
		s.addRootKey(role, k)
	}
	s.signRoot()
	s.timestamp = metadata.Timestamp(exp)
	s.snapshot = metadata.Snapshot(exp)
	s.targets[metadata.TARGETS] = metadata.Targets(exp)
	s.dirty[metadata.TARGETS] = true
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sim) newKey() crypto.Signer {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(s.t, err)
	return k
}

func pubKey(t testing.TB, k crypto.Signer) *metadata.Key {
	mk, err := metadata.KeyFromPublicKey(k.Public())
	require.NoError(t, err)
	return mk
}

func keyID(t testing.TB, k *metadata.Key) string {
	id, err := k.ID()
	require.NoError(t, err)
	return id
}

func (s *sim) addRootKey(role string, k crypto.Signer) {
	require.NoError(s.t, s.root.Signed.AddKey(pubKey(s.t, k), role))
}

// signRoot signs the current root with the root keys and serves it as
// <version>.root.json.
func (s *sim) signRoot() {
	signWith(s.t, s.root, s.rootKeys...)
	b, err := s.root.ToBytes(true)
	require.NoError(s.t, err)
	s.put(fmt.Sprintf("metadata/%d.root.json", s.root.Signed.Version), b)
}

// rotateRoot makes root version+1 with change applied (the root keys stay).
func (s *sim) rotateRoot(change func(*metadata.RootType)) {
	s.root.Signed.Version++
	change(&s.root.Signed)
	s.signRoot()
}

// rotateTopKey gives a top-level role a new key in a new root.
func (s *sim) rotateTopKey(role string) {
	k := s.newKey()
	s.rotateRoot(func(r *metadata.RootType) {
		for _, id := range r.Roles[role].KeyIDs {
			require.NoError(s.t, r.RevokeKey(id, role))
		}
		require.NoError(s.t, r.AddKey(pubKey(s.t, k), role))
	})
	s.keys[role] = k
}

// delegation describes one delegated role.
type delegation struct {
	name         string
	paths        []string
	hashPrefixes []string // path_hash_prefixes, if no paths
	terminating  bool
}

// delegate adds roles, each with a fresh key, to delegator's delegations, in
// order.
func (s *sim) delegate(delegator string, roles ...delegation) {
	d := s.targets[delegator]
	require.NotNil(s.t, d, delegator)
	if d.Signed.Delegations == nil {
		d.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	for _, r := range roles {
		k := s.newKey()
		mk := pubKey(s.t, k)
		id := keyID(s.t, mk)
		d.Signed.Delegations.Keys[id] = mk
		d.Signed.Delegations.Roles = append(d.Signed.Delegations.Roles, metadata.DelegatedRole{
			Name: r.name, KeyIDs: []string{id}, Threshold: 1, Terminating: r.terminating, Paths: r.paths, PathHashPrefixes: r.hashPrefixes})
		s.dkeys[r.name] = k
		if s.targets[r.name] == nil {
			s.targets[r.name] = metadata.Targets(t0.AddDate(1, 0, 0))
		}
		s.dirty[r.name] = true
	}
	s.dirty[delegator] = true
}

// bins makes delegator delegate by succinct hashed bins (TAP 15): 2^bits
// roles named prefix-<hex>, one key for all.
func (s *sim) bins(delegator, prefix string, bits int) {
	d := s.targets[delegator]
	k := s.newKey()
	mk := pubKey(s.t, k)
	id := keyID(s.t, mk)
	d.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{id: mk},
		SuccinctRoles: &metadata.SuccinctRoles{KeyIDs: []string{id}, Threshold: 1, BitLength: bits, NamePrefix: prefix}}
	for _, name := range d.Signed.Delegations.SuccinctRoles.GetRoles() {
		s.dkeys[name] = k
		s.targets[name] = metadata.Targets(t0.AddDate(1, 0, 0))
		s.dirty[name] = true
	}
	s.dirty[delegator] = true
}

// binOf names the bin of delegator that holds target name.
func (s *sim) binOf(delegator, name string) string {
	return s.targets[delegator].Signed.Delegations.GetRolesForTarget(name)[0].Name
}

// addTarget lists data as target name in role, hashed with algs (sha256 if
// none), and serves it under every hash prefix.
func (s *sim) addTarget(role, name string, data []byte, algs ...string) {
	if len(algs) == 0 {
		algs = []string{"sha256"}
	}
	tf, err := metadata.TargetFile().FromBytes(name, data, algs...)
	require.NoError(s.t, err)
	s.targets[role].Signed.Targets[name] = tf
	dir, file := path.Split(name)
	for _, h := range tf.Hashes {
		s.put("targets/"+dir+hex.EncodeToString(h)+"."+file, data)
	}
	s.dirty[role] = true
}

// publish signs every changed targets role with a new version, then a new
// snapshot (naming every role's version) and timestamp.
func (s *sim) publish() {
	for name, dirty := range s.dirty {
		if !dirty {
			continue
		}
		md := s.targets[name]
		md.Signed.Version++
		s.putTargets(name)
		delete(s.dirty, name)
	}
	s.snapshot.Signed.Version++
	s.snapshot.Signed.Meta = map[string]*metadata.MetaFiles{}
	for name, md := range s.targets {
		s.snapshot.Signed.Meta[name+".json"] = metadata.MetaFile(md.Signed.Version)
	}
	signWith(s.t, s.snapshot, s.keys[metadata.SNAPSHOT])
	b, err := s.snapshot.ToBytes(true)
	require.NoError(s.t, err)
	s.put(fmt.Sprintf("metadata/%d.snapshot.json", s.snapshot.Signed.Version), b)
	s.stamp()
}

// putTargets signs role as it is and serves it under its current version.
func (s *sim) putTargets(role string) {
	md := s.targets[role]
	k := s.dkeys[role]
	if role == metadata.TARGETS {
		k = s.keys[role]
	}
	signWith(s.t, md, k)
	b, err := md.ToBytes(true)
	require.NoError(s.t, err)
	s.put(fmt.Sprintf("metadata/%d.%s.json", md.Signed.Version, role), b)
}

// stamp signs a new timestamp over the current snapshot.
func (s *sim) stamp() {
	s.timestamp.Signed.Version++
	s.timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(s.snapshot.Signed.Version)
	signWith(s.t, s.timestamp, s.keys[metadata.TIMESTAMP])
	b, err := s.timestamp.ToBytes(true)
	require.NoError(s.t, err)
	s.put("metadata/timestamp.json", b)
}

func (s *sim) put(p string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[p] = b
}

// fail makes the server answer code for p ("metadata/3.snapshot.json");
// 0 serves it again.
func (s *sim) fail(p string, code int) { s.setFault(s.override, p, code) }

// cutAfter makes the server drop the connection after n bytes of p; 0
// serves it whole again.
func (s *sim) cutAfter(p string, n int) { s.setFault(s.cut, p, n) }

func (s *sim) setFault(m map[string]int, p string, v int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v == 0 {
		delete(m, p)
		return
	}
	m[p] = v
}

func (s *sim) serve(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/")
	s.mu.Lock()
	s.requests = append(s.requests, p)
	code, failed := s.override[p]
	cut := s.cut[p]
	b, ok := s.files[p]
	if r.Header.Get("Range") != "" {
		s.ranges++
	}
	s.mu.Unlock()
	switch {
	case failed:
		http.Error(w, "made to fail", code)
	case !ok:
		http.NotFound(w, r)
	case cut > 0:
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		_, _ = w.Write(b[:cut])
		panic(http.ErrAbortHandler) // drops the connection
	default:
		http.ServeContent(w, r, path.Base(p), time.Time{}, strings.NewReader(string(b)))
	}
}

// takeRequests returns the paths requested since its last call.
func (s *sim) takeRequests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.requests
	s.requests = nil
	return r
}

// client returns a client of the repository persisting under dir.
func (s *sim) client(dir string, opts ...func(*tuf.Options)) *tuf.Client {
	s.t.Helper()
	s.mu.Lock()
	rb := s.files["metadata/1.root.json"]
	s.mu.Unlock()
	require.NotNil(s.t, rb)
	o := tuf.Options{Dir: dir + "/tuf", DownloadDir: dir + "/downloads", TrustedRoot: rb,
		MetadataURL: s.srv.URL + "/metadata", TargetsURL: s.srv.URL + "/targets",
		Clock: s.clock.Now, Retries: -1}
	for _, f := range opts {
		f(&o)
	}
	c, err := tuf.New(o)
	require.NoError(s.t, err)
	return c
}

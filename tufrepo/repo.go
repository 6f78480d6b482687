package tufrepo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/ringfence/ringfence/compat"
	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/rollout"
)

// Role names: the four top-level roles and the two delegations.
const (
	RoleRoot      = metadata.ROOT
	RoleTargets   = metadata.TARGETS
	RoleSnapshot  = metadata.SNAPSHOT
	RoleTimestamp = metadata.TIMESTAMP
	RoleContent   = "content"
	RoleRollout   = "rollout"
)

// Delegated path patterns. TUF patterns match one path component per
// pattern component, so content's is "channels/*/*" (channels/N/V.rfch).
const (
	ContentPaths = "channels/*/*"
	RolloutPaths = "rollout/*"
)

// Expiry of each role's metadata from the moment it is signed. The timestamp
// is short so a frozen mirror is noticed within a day; `repo refresh`
// re-signs it (run it from cron, or let `serve` do it).
var Expiry = map[string]time.Duration{
	RoleRoot:      365 * 24 * time.Hour,
	RoleTargets:   365 * 24 * time.Hour,
	RoleContent:   90 * 24 * time.Hour,
	RoleRollout:   30 * 24 * time.Hour,
	RoleSnapshot:  7 * 24 * time.Hour,
	RoleTimestamp: 24 * time.Hour,
}

// MaxMetadataSize bounds a metadata file the repository reads back.
const MaxMetadataSize = 8 << 20

// Repo is an open repository: its metadata (read from REPO/metadata) and the
// key directory. Methods that change it write targets first, then delegated
// metadata, snapshot, and the timestamp last, each through the durable-write
// helper, so a client never sees a timestamp naming files not yet there.
type Repo struct {
	dir, keys string
	clock     clock.Clock // expiry is computed from its time

	root      *metadata.Metadata[metadata.RootType]
	targets   *metadata.Metadata[metadata.TargetsType]
	content   *metadata.Metadata[metadata.TargetsType]
	rollout   *metadata.Metadata[metadata.TargetsType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
}

// InitOptions configure Init.
type InitOptions struct {
	// Threshold is the number of root keys that must sign root (default 1);
	// Init makes that many root keys.
	Threshold int
	KeyType   KeyType
	// Clock is the time expiry is computed from; nil means clock.System.
	Clock clock.Clock
}

func (r *Repo) metaDir() string    { return filepath.Join(r.dir, "metadata") }
func (r *Repo) targetsDir() string { return filepath.Join(r.dir, "targets") }

func (r *Repo) expires(role string) time.Time {
	return r.clock.Now().UTC().Add(Expiry[role]).Truncate(time.Second)
}

// Init creates a repository in dir (metadata/ and targets/) and its keys in
// keys (one PKCS#8 file per role key, mode 0600): root (threshold keys),
// targets, snapshot, timestamp, and the delegated content and rollout roles.
// It refuses a directory that already holds a repository.
func Init(dir, keys string, opts InitOptions) (*Repo, error) {
	if opts.Threshold < 1 {
		opts.Threshold = 1
	}
	if opts.Clock == nil {
		opts.Clock = clock.System{}
	}
	if err := opts.KeyType.check(); err != nil {
		return nil, err // before anything is created
	}
	r := &Repo{dir: dir, keys: keys, clock: opts.Clock}
	if _, err := os.Stat(filepath.Join(r.metaDir(), "root.json")); err == nil {
		return nil, fmt.Errorf("tufrepo: %s already holds a repository; use 'keys rotate' or start from an empty directory", dir)
	}
	for _, d := range []string{r.metaDir(), r.targetsDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("tufrepo: %w", err)
		}
	}
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return nil, fmt.Errorf("tufrepo: %w", err)
	}
	gen := func(role string, _ int) (*privateKey, error) {
		k, err := freshKey(keys, role, opts.KeyType)
		if err != nil {
			return nil, err
		}
		return k, writeKey(keys, filepath.Base(k.file), k.signer)
	}
	r.root = metadata.Root(r.expires(RoleRoot))
	r.root.Signed.ConsistentSnapshot = true
	var rootKeys []*privateKey
	for n := 1; n <= opts.Threshold; n++ {
		k, err := gen(RoleRoot, n)
		if err != nil {
			return nil, err
		}
		rootKeys = append(rootKeys, k)
		if err := r.root.Signed.AddKey(k.pub, RoleRoot); err != nil {
			return nil, err
		}
	}
	r.root.Signed.Roles[RoleRoot].Threshold = opts.Threshold
	for _, role := range []string{RoleTargets, RoleSnapshot, RoleTimestamp} {
		k, err := gen(role, 1)
		if err != nil {
			return nil, err
		}
		if err := r.root.Signed.AddKey(k.pub, role); err != nil {
			return nil, err
		}
	}
	r.targets = metadata.Targets(r.expires(RoleTargets))
	r.targets.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	for _, d := range []struct{ role, paths string }{{RoleContent, ContentPaths}, {RoleRollout, RolloutPaths}} {
		k, err := gen(d.role, 1)
		if err != nil {
			return nil, err
		}
		r.targets.Signed.Delegations.Keys[k.id] = k.pub
		r.targets.Signed.Delegations.Roles = append(r.targets.Signed.Delegations.Roles, metadata.DelegatedRole{
			Name: d.role, KeyIDs: []string{k.id}, Threshold: 1, Terminating: true, Paths: []string{d.paths},
		})
	}
	r.content = metadata.Targets(r.expires(RoleContent))
	r.rollout = metadata.Targets(r.expires(RoleRollout))
	r.snapshot = metadata.Snapshot(r.expires(RoleSnapshot))
	r.timestamp = metadata.Timestamp(r.expires(RoleTimestamp))
	if err := sign(r.root, rootKeys); err != nil {
		return nil, err
	}
	if err := r.writeRoot(); err != nil {
		return nil, err
	}
	if err := r.commit(RoleTargets, RoleContent, RoleRollout); err != nil {
		return nil, err
	}
	return r, nil
}

// ErrNoRepository is returned for a directory that holds no repository.
var ErrNoRepository = errors.New("tufrepo: no repository")

func noRepository(dir string) error {
	return fmt.Errorf("%w in %s (no metadata/root.json): check the path, or make one with 'ringfence-server repo init'", ErrNoRepository, dir)
}

// Open reads the repository in dir; keys is the key directory (it may lack
// the root keys, which only root changes need). clk is the time expiry is
// computed from; nil means clock.System.
func Open(dir, keys string, clk clock.Clock) (*Repo, error) {
	if clk == nil {
		clk = clock.System{}
	}
	r := &Repo{dir: dir, keys: keys, clock: clk}
	var err error
	if r.root, err = load[metadata.RootType](r, "root.json"); errors.Is(err, fs.ErrNotExist) {
		return nil, noRepository(dir)
	} else if err != nil {
		return nil, err
	}
	if r.timestamp, err = load[metadata.TimestampType](r, "timestamp.json"); err != nil {
		return nil, err
	}
	sm := r.timestamp.Signed.Meta["snapshot.json"]
	if sm == nil {
		return nil, fmt.Errorf("tufrepo: %s: timestamp names no snapshot", dir)
	}
	if r.snapshot, err = load[metadata.SnapshotType](r, fmt.Sprintf("%d.snapshot.json", sm.Version)); err != nil {
		return nil, err
	}
	for role, dst := range map[string]**metadata.Metadata[metadata.TargetsType]{RoleTargets: &r.targets, RoleContent: &r.content, RoleRollout: &r.rollout} {
		m := r.snapshot.Signed.Meta[role+".json"]
		if m == nil {
			return nil, fmt.Errorf("tufrepo: %s: snapshot names no %s metadata", dir, role)
		}
		if *dst, err = load[metadata.TargetsType](r, fmt.Sprintf("%d.%s.json", m.Version, role)); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func load[T metadata.Roles](r *Repo, name string) (*metadata.Metadata[T], error) {
	data, err := boundedio.ReadFile(filepath.Join(r.metaDir(), name), MaxMetadataSize)
	if err != nil {
		return nil, fmt.Errorf("tufrepo: open repository %s: %w", r.dir, err)
	}
	m, err := (&metadata.Metadata[T]{}).FromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("tufrepo: %s: %w", name, err)
	}
	return m, nil
}

// RootJSON returns the current root metadata's bytes: what a host installs as
// its trusted root.
func (r *Repo) RootJSON() ([]byte, error) {
	return boundedio.ReadFile(filepath.Join(r.metaDir(), "root.json"), MaxMetadataSize)
}

// writeRoot writes N.root.json and root.json.
func (r *Repo) writeRoot() error {
	b, err := r.root.ToBytes(true)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(r.metaDir(), fmt.Sprintf("%d.root.json", r.root.Signed.Version)), b, 0o644); err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(r.metaDir(), "root.json"), b, 0o644)
}

// commit re-signs the changed targets-family roles (bumping their versions
// unless fresh), then snapshot and timestamp, and writes them in that order.
func (r *Repo) commit(changed ...string) error {
	for _, role := range changed {
		m := r.targetsRole(role)
		if len(m.Signatures) > 0 { // an existing role: a new version
			m.Signed.Version++
		}
		m.Signed.Expires = r.expires(role)
		keys, err := r.signers(role)
		if err != nil {
			return err
		}
		if err := sign(m, keys); err != nil {
			return err
		}
		b, err := m.ToBytes(true)
		if err != nil {
			return err
		}
		if err := atomicfile.WriteFile(filepath.Join(r.metaDir(), fmt.Sprintf("%d.%s.json", m.Signed.Version, role)), b, 0o644); err != nil {
			return err
		}
		r.snapshot.Signed.Meta[role+".json"] = metadata.MetaFile(m.Signed.Version)
	}
	return r.commitSnapshot()
}

// commitSnapshot re-signs snapshot and timestamp with fresh expiry.
func (r *Repo) commitSnapshot() error {
	if len(r.snapshot.Signatures) > 0 {
		r.snapshot.Signed.Version++
	}
	r.snapshot.Signed.Expires = r.expires(RoleSnapshot)
	keys, err := r.signers(RoleSnapshot)
	if err != nil {
		return err
	}
	if err := sign(r.snapshot, keys); err != nil {
		return err
	}
	b, err := r.snapshot.ToBytes(true)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(r.metaDir(), fmt.Sprintf("%d.snapshot.json", r.snapshot.Signed.Version)), b, 0o644); err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	r.timestamp.Signed.Meta["snapshot.json"] = &metadata.MetaFiles{Version: r.snapshot.Signed.Version, Length: int64(len(b)), Hashes: metadata.Hashes{"sha256": sum[:]}}
	return r.commitTimestamp()
}

func (r *Repo) commitTimestamp() error {
	if len(r.timestamp.Signatures) > 0 {
		r.timestamp.Signed.Version++
	}
	r.timestamp.Signed.Expires = r.expires(RoleTimestamp)
	keys, err := r.signers(RoleTimestamp)
	if err != nil {
		return err
	}
	if err := sign(r.timestamp, keys); err != nil {
		return err
	}
	b, err := r.timestamp.ToBytes(true)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(r.metaDir(), "timestamp.json"), b, 0o644)
}

func (r *Repo) targetsRole(role string) *metadata.Metadata[metadata.TargetsType] {
	switch role {
	case RoleTargets:
		return r.targets
	case RoleContent:
		return r.content
	case RoleRollout:
		return r.rollout
	}
	panic("tufrepo: not a targets role: " + role)
}

// signers loads the private keys the current metadata trusts for role.
func (r *Repo) signers(role string) ([]*privateKey, error) {
	switch role {
	case RoleContent, RoleRollout:
		for _, d := range r.targets.Signed.Delegations.Roles {
			if d.Name == role {
				return signersFor(r.keys, role, d.KeyIDs)
			}
		}
		return nil, fmt.Errorf("tufrepo: targets delegates no %s role", role)
	}
	rr := r.root.Signed.Roles[role]
	if rr == nil {
		return nil, fmt.Errorf("tufrepo: root has no %s role", role)
	}
	return signersFor(r.keys, role, rr.KeyIDs)
}

// addTarget writes data as target name (hash-prefixed, for consistent
// snapshots) and records it in role's metadata.
func (r *Repo) addTarget(role, name string, data []byte, custom json.RawMessage) error {
	tf, err := metadata.TargetFile().FromBytes(name, data, "sha256")
	if err != nil {
		return err
	}
	if custom != nil {
		tf.Custom = &custom
	}
	sum := sha256.Sum256(data)
	dir, base := path.Split(name)
	dst := filepath.Join(r.targetsDir(), filepath.FromSlash(dir), hex.EncodeToString(sum[:])+"."+base)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(dst, data, 0o644); err != nil {
		return err
	}
	r.targetsRole(role).Signed.Targets[name] = tf
	return nil
}

// ErrExists is returned when publishing a content version that is already
// in the repository with different bytes.
var ErrExists = errors.New("tufrepo: content version already published with different bytes; publish a new version")

// Publish adds a channel file as target channels/<channel>/<version>.rfch in
// the content role and re-signs content, snapshot and timestamp. The caller
// has validated and preflighted it, for any sensor (PublishFor).
func (r *Repo) Publish(channel, version uint32, data []byte) (string, error) {
	return r.PublishFor(channel, version, data, compat.Constraint{})
}

// PublishFor is Publish for content that may run only where c allows: the
// constraint is signed with it as the target's custom metadata (package
// compat). The same bytes with the same constraint again change nothing;
// with another constraint, they are refused (ErrOtherConstraint): hosts
// may hold the first, so a new constraint needs a new version.
func (r *Repo) PublishFor(channel, version uint32, data []byte, c compat.Constraint) (string, error) {
	name := rollout.ContentTarget(channel, version)
	custom, err := c.Custom()
	if err != nil {
		return "", err
	}
	if old := r.content.Signed.Targets[name]; old != nil {
		sum := sha256.Sum256(data)
		if old.Length != int64(len(data)) || hex.EncodeToString(old.Hashes["sha256"]) != hex.EncodeToString(sum[:]) {
			return "", fmt.Errorf("%w: %s", ErrExists, name)
		}
		if was, err := constraintOf(old); err != nil || !slices.Equal(was.Sensors, slices.Sorted(slices.Values(c.Sensors))) {
			return "", fmt.Errorf("%w: %s is published for %v; to publish it for %v, give it a new version", ErrOtherConstraint, name, was, c)
		}
		return name, nil // the same bytes again: nothing to do
	}
	if err := r.addTarget(RoleContent, name, data, custom); err != nil {
		return "", err
	}
	return name, r.commit(RoleContent)
}

// Constraint returns the compatibility constraint published with content
// version v of channel ch; ErrNotPublished when there is no such version.
func (r *Repo) Constraint(ch, v uint32) (compat.Constraint, error) {
	tf := r.content.Signed.Targets[rollout.ContentTarget(ch, v)]
	if tf == nil {
		return compat.Constraint{}, fmt.Errorf("%w: version %d on channel %d", ErrNotPublished, v, ch)
	}
	return constraintOf(tf)
}

// ErrOtherConstraint is returned when publishing the bytes of a content
// version again with another compatibility constraint.
var ErrOtherConstraint = errors.New("tufrepo: content version already published with another compatibility constraint")

// ErrNotPublished is returned for a content version the repository does
// not hold.
var ErrNotPublished = errors.New("tufrepo: not published")

func constraintOf(tf *metadata.TargetFiles) (compat.Constraint, error) {
	if tf.Custom == nil {
		return compat.Constraint{}, nil
	}
	return compat.Parse(*tf.Custom)
}

// PublishBinary adds a ringfenced binary as target
// ringfenced/<goos>-<goarch>/<version>, signed by the top-level targets role (no
// delegation covers agent/), and re-signs targets, snapshot and timestamp.
func (r *Repo) PublishBinary(goos, goarch, version string, data []byte) (string, error) {
	name := rollout.BinaryTarget(goos, goarch, version)
	if _, _, _, ok := rollout.ParseBinaryTarget(name); !ok {
		return "", fmt.Errorf("tufrepo: %q is not a valid binary target (platform like linux-amd64, version starting with a digit)", name)
	}
	if r.targets.Signed.Targets[name] != nil {
		return "", fmt.Errorf("%w: %s", ErrExists, name)
	}
	if err := r.addTarget(RoleTargets, name, data, nil); err != nil {
		return "", err
	}
	return name, r.commit(RoleTargets)
}

// SetRollout signs plan (JSON) as target rollout/<channel>.json with the
// rollout role. Every version the plan names must be published content.
func (r *Repo) SetRollout(channel uint32, plan []byte) error {
	p, err := rollout.Parse(plan)
	if err != nil {
		return err
	}
	if p.Channel != channel {
		return fmt.Errorf("tufrepo: the plan is for channel %d, not %d", p.Channel, channel)
	}
	for _, s := range p.Stages {
		c, err := r.Constraint(channel, s.Version)
		if errors.Is(err, ErrNotPublished) {
			return fmt.Errorf("tufrepo: stage %s names version %d, which is not published on channel %d", s.Name, s.Version, channel)
		}
		if err != nil {
			return fmt.Errorf("tufrepo: stage %s: version %d: %w", s.Name, s.Version, err)
		}
		if !s.Constraint().Within(c) {
			return fmt.Errorf("tufrepo: stage %s gives version %d to %v, but it is published for %v: list those in the stage's \"sensors\"", s.Name, s.Version, s.Constraint(), compat.Constraint{Sensors: c.Sensors})
		}
	}
	if err := r.addTarget(RoleRollout, rollout.RolloutTarget(channel), plan, nil); err != nil {
		return err
	}
	return r.commit(RoleRollout)
}

// Refresh re-signs timestamp and snapshot with fresh expiry (and any
// targets-family role that expires within a quarter of its lifetime).
func (r *Repo) Refresh() error {
	var soon []string
	for _, role := range []string{RoleTargets, RoleContent, RoleRollout} {
		m := r.targetsRole(role)
		if m.Signed.Expires.Sub(r.clock.Now()) < Expiry[role]/4 {
			soon = append(soon, role)
		}
	}
	return r.commit(soon...)
}

// Targets returns the content and rollout targets, by name.
func (r *Repo) Targets() map[string]*metadata.TargetFiles {
	out := map[string]*metadata.TargetFiles{}
	for k, v := range r.content.Signed.Targets {
		out[k] = v
	}
	for k, v := range r.rollout.Signed.Targets {
		out[k] = v
	}
	return out
}

// PublishMany adds several content versions of one channel in one commit
// (bulk import): files maps a version number (decimal) to its bytes, and
// versions start at first when a key does not parse.
func (r *Repo) PublishMany(channel uint32, files map[string][]byte, first uint32) error {
	next := first
	for k, data := range files {
		v, err := strconv.ParseUint(k, 10, 32)
		if err != nil {
			v = uint64(next)
			next++
		}
		name := rollout.ContentTarget(channel, uint32(v))
		if r.content.Signed.Targets[name] != nil {
			return fmt.Errorf("%w: %s", ErrExists, name)
		}
		if err := r.addTarget(RoleContent, name, data, nil); err != nil {
			return err
		}
	}
	return r.commit(RoleContent)
}

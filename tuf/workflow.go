package tuf

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// MaxDelegations bounds the delegated roles one target lookup visits (the
// same bound as go-tuf's and python-tuf's clients).
const MaxDelegations = 32

// session is one run of the TUF client workflow (specification section 5):
// the trusted set go-tuf's trustedmetadata verifies every step against, and
// the delegator that verified each delegated role. A session outlives its
// Refresh: target lookups walk delegations through it later, fetching and
// persisting the roles they need.
type session struct {
	c       *Client
	store   store
	trusted *trustedmetadata.TrustedMetadata
	// via names, for every targets role the session trusts, the delegator
	// whose keys verified it.
	via map[string]string
}

// newSession starts from the newest root this host trusts: the persisted
// one, else the one installed with the agent (5.2), which is persisted once
// it verified against itself.
func (c *Client) newSession() (*session, error) {
	st := store{c.opts.Dir}
	root, err := st.load(metadata.ROOT, MaxRootSize)
	if err != nil {
		return nil, err
	}
	installed := root == nil
	if installed {
		root = c.opts.TrustedRoot
	}
	trusted, err := trustedmetadata.New(root)
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	if installed {
		if err := st.persist(metadata.ROOT, root); err != nil {
			return nil, err
		}
	}
	trusted.RefTime = c.opts.Clock().UTC()
	return &session{c: c, store: st, trusted: trusted, via: map[string]string{}}, nil
}

// refresh runs steps 5.3 to 5.6 for the top-level roles. Each role is
// persisted as soon as it verified, as the specification asks (5.3.8,
// 5.4.5, 5.5.7, 5.6.6): a refresh that fails at a later step keeps the new
// root (and the keys it dropped) and the rollback baseline it reached.
func (s *session) refresh(ctx context.Context) error {
	if err := s.updateRoot(ctx); err != nil {
		return err
	}
	if err := s.updateTimestamp(ctx); err != nil {
		return err
	}
	if err := s.updateSnapshot(ctx); err != nil {
		return err
	}
	_, err := s.loadTargets(ctx, metadata.TARGETS, metadata.ROOT)
	return err
}

// updateRoot walks the root versions after the trusted one (5.3.3-5.3.9),
// persisting each at once (5.3.8), then forgets a timestamp and snapshot
// whose keys the new root rotated (5.3.11). The final root's expiry is
// checked with the timestamp (5.3.10), after the persisting, as the
// specification orders it.
func (s *session) updateRoot(ctx context.Context) error {
	old := s.trusted.Root
	rotations := s.c.opts.MaxRootRotations
	if rotations <= 0 {
		rotations = defaultMaxRootRotations
	}
	for v := old.Signed.Version + 1; v <= old.Signed.Version+rotations; v++ {
		data, err := s.c.fetchMetadata(ctx, strconv.FormatInt(v, 10)+".root.json", MaxRootSize)
		if isHTTPNotFound(err) {
			break
		}
		if err != nil {
			return err
		}
		if _, err := s.trusted.UpdateRoot(data); err != nil {
			return err
		}
		if err := s.store.persist(metadata.ROOT, data); err != nil {
			return err
		}
	}
	if s.trusted.Root == old {
		return nil
	}
	for _, role := range []string{metadata.TIMESTAMP, metadata.SNAPSHOT} {
		if rotated(old, s.trusted.Root, role) {
			for _, r := range []string{metadata.TIMESTAMP, metadata.SNAPSHOT} {
				if err := s.store.remove(r); err != nil {
					return err
				}
			}
			break
		}
	}
	return nil
}

const defaultMaxRootRotations = 256

// rotated reports whether role's keys or threshold differ between two roots.
func rotated(old, cur *metadata.Metadata[metadata.RootType], role string) bool {
	a, b := old.Signed.Roles[role], cur.Signed.Roles[role]
	if a == nil || b == nil {
		return a != b
	}
	if a.Threshold != b.Threshold || len(a.KeyIDs) != len(b.KeyIDs) {
		return true
	}
	for _, id := range a.KeyIDs {
		if !slices.Contains(b.KeyIDs, id) {
			return true
		}
	}
	return false
}

// updateTimestamp loads the trusted timestamp as the rollback baseline, then
// the repository's (5.4), and persists a new one that verified (5.4.5).
func (s *session) updateTimestamp(ctx context.Context) error {
	if err := s.loadLocal(metadata.TIMESTAMP, MaxTimestampSize, func(b []byte) error {
		_, err := s.trusted.UpdateTimestamp(b)
		return err
	}); err != nil {
		return err
	}
	data, err := s.c.fetchMetadata(ctx, "timestamp.json", MaxTimestampSize)
	if err != nil {
		return err
	}
	if _, err := s.trusted.UpdateTimestamp(data); err != nil {
		if errors.Is(err, &metadata.ErrEqualVersionNumber{}) {
			return nil // nothing new; the trusted one stays
		}
		return err
	}
	return s.store.persist(metadata.TIMESTAMP, data)
}

// updateSnapshot keeps the trusted snapshot if it is the one the timestamp
// names, else fetches, verifies and persists the repository's (5.5).
func (s *session) updateSnapshot(ctx context.Context) error {
	current := false
	if err := s.loadLocal(metadata.SNAPSHOT, MaxSnapshotSize, func(b []byte) error {
		_, err := s.trusted.UpdateSnapshot(b, true)
		current = err == nil
		return err
	}); err != nil || current {
		return err
	}
	meta := s.trusted.Timestamp.Signed.Meta["snapshot.json"]
	if meta == nil {
		return &metadata.ErrRepository{Msg: "timestamp names no snapshot.json"}
	}
	limit, err := metaLimit("snapshot", meta, MaxSnapshotSize)
	if err != nil {
		return err
	}
	data, err := s.c.fetchMetadata(ctx, s.versioned("snapshot", meta.Version), limit)
	if err != nil {
		return err
	}
	if _, err := s.trusted.UpdateSnapshot(data, false); err != nil {
		return err
	}
	return s.store.persist(metadata.SNAPSHOT, data)
}

// loadTargets returns targets role name as delegated by delegator (root for
// the top-level targets), verified in this session (5.6): the trusted copy
// if it verifies against the delegator's current keys and is the version the
// snapshot names, else the repository's, persisted once it verified (5.6.6).
// A role the session already trusts through another delegator must verify
// against this one's keys too: trust follows the delegation, not the name.
func (s *session) loadTargets(ctx context.Context, role, delegator string) (*metadata.Metadata[metadata.TargetsType], error) {
	if md, ok := s.trusted.Targets[role]; ok {
		if s.via[role] != delegator {
			d := s.delegatorOf(delegator)
			if d == nil {
				return nil, &metadata.ErrRuntime{Msg: "delegator " + delegator + " is not trusted yet"}
			}
			if err := d.VerifyDelegate(role, md); err != nil {
				return nil, fmt.Errorf("%w: %s, trusted through %s, is not signed by the keys %s delegates it to: %v", ErrBadSignature, role, s.via[role], delegator, err)
			}
		}
		return md, nil
	}
	if role != metadata.TARGETS && topLevel[role] {
		return nil, fmt.Errorf("%w: %s delegates to a role named %q, a top-level role's name", ErrInvalid, delegator, role)
	}
	var md *metadata.Metadata[metadata.TargetsType]
	if err := s.loadLocal(role, MaxTargetsSize, func(b []byte) error {
		var err error
		md, err = s.trusted.UpdateDelegatedTargets(b, role, delegator)
		return err
	}); err != nil {
		return nil, err
	}
	if md == nil {
		meta := s.trusted.Snapshot.Signed.Meta[role+".json"]
		if meta == nil {
			return nil, &metadata.ErrRepository{Msg: fmt.Sprintf("snapshot names no %s.json", role)}
		}
		limit, err := metaLimit(role, meta, MaxTargetsSize)
		if err != nil {
			return nil, err
		}
		data, err := s.c.fetchMetadata(ctx, s.versioned(url.PathEscape(role), meta.Version), limit)
		if err != nil {
			return nil, err
		}
		if md, err = s.trusted.UpdateDelegatedTargets(data, role, delegator); err != nil {
			return nil, err
		}
		if err := s.store.persist(role, data); err != nil {
			return nil, err
		}
	}
	s.via[role] = delegator
	return md, nil
}

// delegatorOf returns the metadata whose keys delegate to a role: the root
// for the top-level targets, else a targets role the session trusts (nil if
// it trusts none by that name).
func (s *session) delegatorOf(name string) interface {
	VerifyDelegate(string, any) error
} {
	if name == metadata.ROOT {
		return s.trusted.Root
	}
	if t := s.trusted.Targets[name]; t != nil {
		return t
	}
	return nil
}

// loadLocal offers role's trusted bytes to update. A trusted copy that no
// longer verifies (expired, signed by keys since rotated, another version
// than the snapshot names, unreadable) is ignored and the repository's is
// fetched, as the specification's clients do: everything fetched is
// verified from the trusted root down, so ignoring a copy never trusts
// more. A read error or a broken invariant of the workflow stops it.
func (s *session) loadLocal(role string, limit int64, update func([]byte) error) error {
	b, err := s.store.load(role, limit)
	if errors.Is(err, ErrTooLarge) {
		return nil // not a copy this client wrote: ignore it, fetch anew
	}
	if err != nil || b == nil {
		return err
	}
	if err := update(b); errors.Is(err, &metadata.ErrRuntime{}) {
		return err
	}
	return nil
}

// versioned is the file name of a role's metadata version: <v>.<role>.json
// when the root asks for consistent snapshots, else <role>.json.
func (s *session) versioned(role string, version int64) string {
	if s.trusted.Root.Signed.ConsistentSnapshot {
		return strconv.FormatInt(version, 10) + "." + role + ".json"
	}
	return role + ".json"
}

// metaLimit bounds a metadata download by the length its signed parent
// names, or by limit when it names none; a signed length above limit is
// refused before anything is fetched.
func metaLimit(role string, meta *metadata.MetaFiles, limit int64) (int64, error) {
	switch {
	case meta.Length == 0:
		return limit, nil
	case meta.Length > limit:
		return 0, fmt.Errorf("%w: %s is %d bytes by its signed length; at most %d are read", ErrTooLarge, role, meta.Length, limit)
	}
	return meta.Length, nil
}

// lookup finds target name by the preorder depth-first walk of the
// delegation graph (5.6.7): roles in the order their delegator lists them,
// a terminating delegation ends the search when it does not hold the
// target, cycles are skipped, at most MaxDelegations roles are visited.
// Every role it loads is verified against its delegator and persisted.
func (s *session) lookup(ctx context.Context, name string) (*metadata.TargetFiles, error) {
	type edge struct{ role, delegator string }
	stack := []edge{{metadata.TARGETS, metadata.ROOT}}
	visited := map[string]bool{}
	for len(stack) > 0 {
		if len(visited) >= MaxDelegations {
			return nil, fmt.Errorf("%w: target %s not found within %d delegated roles", ErrNotFound, name, MaxDelegations)
		}
		e := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if visited[e.role] {
			continue
		}
		md, err := s.loadTargets(ctx, e.role, e.delegator)
		if err != nil {
			return nil, err
		}
		if tf, ok := md.Signed.Targets[name]; ok {
			return tf, nil
		}
		visited[e.role] = true
		if md.Signed.Delegations == nil {
			continue
		}
		var children []edge
		for _, r := range rolesFor(md.Signed.Delegations, name) {
			children = append(children, edge{r.Name, e.role})
			if r.Terminating {
				stack = stack[:0]
				break
			}
		}
		slices.Reverse(children)
		stack = append(stack, children...)
	}
	return nil, fmt.Errorf("%w: no signed metadata names target %s", ErrNotFound, name)
}

// rolesFor returns the roles d delegates target name to, in d's order
// (5.6.7.2). Path patterns match segment by segment ("*" never crosses a
// "/"); path_hash_prefixes match the hex SHA-256 of the name, as the
// specification defines them (go-tuf 2.4 compares them with the base64 of
// the hash, so classic hashed bins never match there); succinct hashed bins
// (TAP 15) are go-tuf's, and terminating.
func rolesFor(d *metadata.Delegations, name string) []metadata.RoleResult {
	if d.SuccinctRoles != nil {
		return d.SuccinctRoles.GetRolesForTarget(name)
	}
	var out []metadata.RoleResult
	sum := sha256.Sum256([]byte(name))
	digest := hex.EncodeToString(sum[:])
	for _, r := range d.Roles {
		if delegatedPath(r, name, digest) {
			out = append(out, metadata.RoleResult{Name: r.Name, Terminating: r.Terminating})
		}
	}
	return out
}

func delegatedPath(r metadata.DelegatedRole, name, digest string) bool {
	if len(r.Paths) > 0 {
		parts := strings.Split(name, "/")
		for _, pattern := range r.Paths {
			if matchSegments(strings.Split(pattern, "/"), parts) {
				return true
			}
		}
		return false
	}
	for _, prefix := range r.PathHashPrefixes {
		if strings.HasPrefix(digest, strings.ToLower(prefix)) {
			return true
		}
	}
	return false
}

// matchSegments matches a pattern's segments against a name's, each with
// shell-style wildcards (path.Match, the same on every platform).
func matchSegments(pattern, parts []string) bool {
	if len(pattern) != len(parts) {
		return false
	}
	for i := range parts {
		if ok, _ := path.Match(pattern[i], parts[i]); !ok {
			return false
		}
	}
	return true
}

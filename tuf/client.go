package tuf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/internal/clock"
)

// Bounds on what a refresh reads.
const (
	MaxRootSize      = 512 << 10
	MaxTimestampSize = 16 << 10
	MaxSnapshotSize  = 2 << 20
	MaxTargetsSize   = 8 << 20
	// DefaultMaxTarget bounds a target download when Options.MaxTargetSize
	// is zero (the metadata's length bounds it first).
	DefaultMaxTarget = 64 << 20
)

// Options configure a Client.
type Options struct {
	// Dir is where trusted metadata is persisted (<root>/tuf).
	Dir string
	// DownloadDir is where targets are downloaded (<root>/downloads).
	DownloadDir string
	// TrustedRoot is the root.json installed with the agent; used until a
	// newer root is persisted in Dir.
	TrustedRoot []byte
	// MetadataURL is the repository's metadata/ URL; TargetsURL its
	// targets/ URL (default: MetadataURL's sibling "targets").
	MetadataURL string
	TargetsURL  string
	// HTTPClient makes the requests; nil means one with a 30 s timeout.
	HTTPClient *http.Client
	// Retries is the number of extra attempts after a network failure or a
	// 5xx (default 3), with exponential backoff from RetryBase (default
	// 500 ms) and full jitter; negative means no retries.
	Retries   int
	RetryBase time.Duration
	// Clock gives the time metadata expiry is checked against; nil means
	// clock.System's. It is a func, not a clock.Clock, because expiry needs
	// only Now and callers shift it: the conformance client by FAKETIME,
	// ringfenced and the tests with a clock's Now method value.
	Clock func() time.Time
	// MaxTargetSize bounds a target download (DefaultMaxTarget if zero).
	MaxTargetSize int64
	// MaxRootRotations bounds the root versions one refresh walks (go-tuf's
	// default, 256, if zero).
	MaxRootRotations int64
}

// maxMetadataFiles bounds the metadata files a refresh persists (top-level
// roles plus delegations).
const maxMetadataFiles = 64

// Client is the host's TUF client. It is safe for concurrent use; Refresh
// calls are serialized.
type Client struct {
	opts Options
	mu   sync.Mutex
	up   *updater.Updater // the last successful refresh
}

// New checks opts and returns a client. It does not touch the network.
func New(opts Options) (*Client, error) {
	if opts.Dir == "" || opts.MetadataURL == "" {
		return nil, errors.New("tuf: Options.Dir and Options.MetadataURL are required")
	}
	if opts.TargetsURL == "" {
		u, err := url.JoinPath(opts.MetadataURL, "..", "targets")
		if err != nil {
			return nil, fmt.Errorf("tuf: metadata URL %q: %w", opts.MetadataURL, err)
		}
		opts.TargetsURL = u
	}
	if opts.DownloadDir == "" {
		opts.DownloadDir = filepath.Join(filepath.Dir(opts.Dir), "downloads")
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.Retries == 0 {
		opts.Retries = 3
	}
	if opts.RetryBase == 0 {
		opts.RetryBase = 500 * time.Millisecond
	}
	if opts.Clock == nil {
		opts.Clock = clock.System{}.Now
	}
	if opts.MaxTargetSize == 0 {
		opts.MaxTargetSize = DefaultMaxTarget
	}
	for _, d := range []string{opts.Dir, opts.DownloadDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("tuf: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(opts.Dir, "root.json")); errors.Is(err, fs.ErrNotExist) && len(opts.TrustedRoot) == 0 {
		return nil, fmt.Errorf("%w (Options.TrustedRoot)", ErrNoTrustedRoot)
	}
	return &Client{opts: opts}, nil
}

// trustedRoot is the newest root this host trusts: the persisted one, else
// the installed one.
func (c *Client) trustedRoot() ([]byte, error) {
	b, err := readBounded(filepath.Join(c.opts.Dir, "root.json"), MaxRootSize)
	if errors.Is(err, fs.ErrNotExist) {
		return c.opts.TrustedRoot, nil
	}
	return b, err
}

// Refresh runs the TUF client workflow with a fresh go-tuf Updater (its
// Refresh runs once per Updater): root rotations, timestamp, snapshot,
// targets, and the content and rollout delegations, every step verified
// against what this host already trusts, expiry checked against the
// client's clock. On success the new metadata is persisted under Dir with
// durable writes (go-tuf's own cache does not fsync), root first and the
// timestamp last, so a crash leaves a consistent, never older, trusted set.
func (c *Client) Refresh(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	root, err := c.trustedRoot()
	if err != nil {
		return fmt.Errorf("tuf: trusted root: %w", err)
	}
	// go-tuf reads and writes its working copy in a scratch directory;
	// only a refresh that succeeded is copied into Dir.
	work := filepath.Join(c.opts.Dir, ".work")
	if err := os.RemoveAll(work); err != nil {
		return fmt.Errorf("tuf: %w", err)
	}
	if err := os.MkdirAll(work, 0o700); err != nil {
		return fmt.Errorf("tuf: %w", err)
	}
	defer os.RemoveAll(work)
	ents, err := os.ReadDir(c.opts.Dir)
	if err != nil {
		return fmt.Errorf("tuf: %w", err)
	}
	copied := 0
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ".json") || name == "root.json" {
			continue
		}
		if copied++; copied > maxMetadataFiles {
			return fmt.Errorf("%w: more than %d trusted metadata files in %s", ErrTooLarge, maxMetadataFiles, c.opts.Dir)
		}
		b, err := readBounded(filepath.Join(c.opts.Dir, name), MaxTargetsSize)
		if err != nil {
			return fmt.Errorf("tuf: trusted metadata %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(work, name), b, 0o600); err != nil {
			return fmt.Errorf("tuf: %w", err)
		}
	}
	cfg, err := config.New(c.opts.MetadataURL, root)
	if err != nil {
		return fmt.Errorf("tuf: %w", err)
	}
	cfg.LocalMetadataDir = work
	cfg.LocalTargetsDir = work
	cfg.RemoteTargetsURL = c.opts.TargetsURL
	cfg.PrefixTargetsWithHash = true
	cfg.RootMaxLength, cfg.TimestampMaxLength = MaxRootSize, MaxTimestampSize
	cfg.SnapshotMaxLength, cfg.TargetsMaxLength = MaxSnapshotSize, MaxTargetsSize
	cfg.Fetcher = &fetcher{ctx: ctx, c: c}
	if c.opts.MaxRootRotations > 0 {
		cfg.MaxRootRotations = c.opts.MaxRootRotations
	}
	up, err := updater.New(cfg)
	if err != nil {
		return mapError(err)
	}
	up.UnsafeSetRefTime(c.opts.Clock().UTC())
	if err := up.Refresh(); err != nil {
		return mapError(err)
	}
	// Load both delegations now, so they are verified and persisted with
	// the rest (go-tuf loads delegated metadata on demand).
	for _, probe := range []string{"channels/0/0.rfch", "rollout/0.json"} {
		if _, err := up.GetTargetInfo(probe); err != nil && !isNotFound(err) {
			return mapError(err)
		}
	}
	if err := c.persist(work); err != nil {
		return err
	}
	c.up = up
	return nil
}

// persist copies the refreshed metadata from the scratch directory into Dir
// through the durable-write helper, skipping files that did not change: root
// first, then delegated and top-level targets, snapshot, and the timestamp
// last, so a crash in between leaves a set a later refresh accepts.
func (c *Client) persist(work string) error {
	ents, err := os.ReadDir(work)
	if err != nil {
		return fmt.Errorf("tuf: %w", err)
	}
	if len(ents) > maxMetadataFiles {
		return fmt.Errorf("%w: %d metadata files; at most %d", ErrTooLarge, len(ents), maxMetadataFiles)
	}
	rank := func(name string) int {
		switch name {
		case "root.json":
			return 0
		case "snapshot.json":
			return 2
		case "timestamp.json":
			return 3
		}
		return 1
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".json") {
			names = append(names, e.Name())
		}
	}
	sort.SliceStable(names, func(i, j int) bool { return rank(names[i]) < rank(names[j]) })
	for _, name := range names {
		b, err := readBounded(filepath.Join(work, name), MaxTargetsSize)
		if err != nil {
			return fmt.Errorf("tuf: %w", err)
		}
		dst := filepath.Join(c.opts.Dir, name)
		if old, err := readBounded(dst, MaxTargetsSize); err == nil && bytes.Equal(old, b) {
			continue
		}
		if err := atomicfile.WriteFile(dst, b, 0o600); err != nil {
			return fmt.Errorf("tuf: persist %s: %w", name, err)
		}
	}
	return nil
}

func isNotFound(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "target ") && strings.HasSuffix(err.Error(), " not found")
}

// Target returns the signed length and hashes of target name, from the
// last successful Refresh.
func (c *Client) Target(name string) (*metadata.TargetFiles, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up == nil {
		return nil, errors.New("tuf: Refresh first")
	}
	tf, err := c.up.GetTargetInfo(name)
	if isNotFound(err) {
		return nil, fmt.Errorf("%w: no signed metadata names target %s", ErrNotFound, name)
	}
	if err != nil {
		return nil, mapError(err)
	}
	return tf, nil
}

// ConsistentSnapshot reports whether the trusted root asks for hash-prefixed
// target names (false before the first Refresh).
func (c *Client) consistentSnapshot() bool {
	if c.up == nil {
		return false
	}
	r := c.up.GetTrustedMetadataSet().Root
	return r != nil && r.Signed.ConsistentSnapshot
}

// Targets returns every target the role (content or rollout) lists, from the
// last successful Refresh.
func (c *Client) Targets(role string) map[string]*metadata.TargetFiles {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up == nil {
		return nil
	}
	t := c.up.GetTrustedMetadataSet().Targets[role]
	if t == nil {
		return nil
	}
	return t.Signed.Targets
}

// checkName refuses target names that could escape a directory.
func checkName(name string) error {
	if name == "" || strings.Contains(name, `\`) || strings.HasPrefix(name, "/") || filepath.IsAbs(name) || strings.Contains(name, ":") {
		return fmt.Errorf("%w: %q", ErrBadTarget, name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("%w: %q", ErrBadTarget, name)
		}
	}
	return nil
}

func readBounded(path string, limit int64) ([]byte, error) {
	b, err := boundedio.ReadFile(path, limit)
	if errors.Is(err, boundedio.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %v", ErrTooLarge, err)
	}
	return b, err
}

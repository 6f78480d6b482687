package tuf

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

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
	// DownloadDir is where verified targets are stored (<root>/downloads).
	DownloadDir string
	// PartialDir holds downloads in progress (<name>.part), resumed from
	// there; default DownloadDir. It must be on DownloadDir's file system:
	// a verified file is renamed from one to the other.
	PartialDir string
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

// Client is the host's TUF client. It is safe for concurrent use; Refresh
// calls are serialized.
type Client struct {
	opts Options
	mu   sync.Mutex
	sess *session // the last successful refresh
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
	if opts.PartialDir == "" {
		opts.PartialDir = opts.DownloadDir
	}
	// The download directories are made by the first Download.
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("tuf: %w", err)
	}
	if _, err := os.Stat(filepath.Join(opts.Dir, "root.json")); errors.Is(err, fs.ErrNotExist) && len(opts.TrustedRoot) == 0 {
		return nil, fmt.Errorf("%w (Options.TrustedRoot)", ErrNoTrustedRoot)
	}
	return &Client{opts: opts}, nil
}

// Refresh runs the TUF client workflow (specification 5.3 to 5.6): root
// rotations, timestamp, snapshot and targets, every step verified by go-tuf's
// trustedmetadata against what this host already trusts, expiry checked
// against the client's clock, and each role persisted under Dir, durably, as
// soon as it verified. It then loads the content and rollout delegations,
// which the daemon lists. Delegations beyond them are loaded when a lookup
// (Target, Download) needs them, through the same session.
func (c *Client) Refresh(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A failed refresh leaves nothing to look targets up in: the roles it
	// persisted are newer than the last session's, which must not write
	// older delegated metadata over them.
	c.sess = nil
	s, err := c.newSession()
	if err != nil {
		return mapError(err)
	}
	if err := s.refresh(ctx); err != nil {
		return mapError(err)
	}
	// Load both delegations now, so they are verified and persisted with
	// the rest and Targets can list them.
	for _, probe := range []string{"channels/0/0.rfch", "rollout/0.json"} {
		if _, err := s.lookup(ctx, probe); err != nil && !errors.Is(err, ErrNotFound) {
			return mapError(err)
		}
	}
	c.sess = s
	return nil
}

// Target returns the signed length and hashes of target name, walking the
// delegation graph of the last successful Refresh; delegated metadata it
// needs is fetched, verified and persisted on the way.
func (c *Client) Target(ctx context.Context, name string) (*metadata.TargetFiles, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return nil, errors.New("tuf: Refresh first")
	}
	tf, err := c.sess.lookup(ctx, name)
	if err != nil {
		return nil, mapError(err)
	}
	return tf, nil
}

// consistentSnapshot reports whether the trusted root asks for hash-prefixed
// target names (false before the first Refresh). c.mu is held.
func (c *Client) consistentSnapshot() bool {
	return c.sess != nil && c.sess.trusted.Root.Signed.ConsistentSnapshot
}

// Targets returns every target the role (content or rollout) lists, from the
// last successful Refresh.
func (c *Client) Targets(role string) map[string]*metadata.TargetFiles {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return nil
	}
	t := c.sess.trusted.Targets[role]
	if t == nil {
		return nil
	}
	return t.Signed.Targets
}

// Custom returns the custom metadata the role signed for target name, from
// the last successful Refresh (nil: none, or no such target). The bytes
// are the verified metadata's; the caller parses them, bounded.
func (c *Client) Custom(role, name string) []byte {
	tf := c.Targets(role)[name]
	if tf == nil || tf.Custom == nil {
		return nil
	}
	return *tf.Custom
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

package tufrepo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/ringfence/ringfence/internal/boundedio"
)

// VerifyReport is what Verify checked.
type VerifyReport struct {
	RootVersion      int64    `json:"root_version"`
	TimestampVersion int64    `json:"timestamp_version"`
	SnapshotVersion  int64    `json:"snapshot_version"`
	Targets          []string `json:"targets"`
	// Expires is the earliest expiry among the top-level and delegated
	// metadata: run `repo refresh` before then.
	Expires time.Time `json:"expires"`
}

// Verify checks the repository end to end the way a client does: it serves
// dir over HTTP on loopback and runs go-tuf's own updater from trustedRoot
// (1.root.json when nil, so the whole root chain is walked), at the time
// now, then downloads every content and rollout target and checks its
// length and hashes.
func Verify(ctx context.Context, dir string, trustedRoot []byte, now time.Time) (VerifyReport, error) {
	var rep VerifyReport
	if trustedRoot == nil {
		b, err := boundedio.ReadFile(filepath.Join(dir, "metadata", "1.root.json"), MaxMetadataSize)
		if errors.Is(err, fs.ErrNotExist) {
			return rep, noRepository(dir)
		}
		if err != nil {
			return rep, fmt.Errorf("tufrepo: verify: %w", err)
		}
		trustedRoot = b
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return rep, fmt.Errorf("tufrepo: verify: %w", err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // Serve returns when Shutdown is called below
	defer srv.Shutdown(context.Background())
	base := "http://" + ln.Addr().String()

	work, err := os.MkdirTemp("", "ringfence-verify-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(work)
	cfg, err := config.New(base+"/metadata", trustedRoot)
	if err != nil {
		return rep, err
	}
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = work, work
	cfg.RemoteTargetsURL = base + "/targets"
	cfg.PrefixTargetsWithHash = true
	up, err := updater.New(cfg)
	if err != nil {
		return rep, fmt.Errorf("tufrepo: verify: trusted root: %w", err)
	}
	up.UnsafeSetRefTime(now)
	if err := up.Refresh(); err != nil {
		return rep, fmt.Errorf("tufrepo: verify: refresh: %w", err)
	}
	trusted := up.GetTrustedMetadataSet()
	rep.RootVersion = trusted.Root.Signed.Version
	rep.TimestampVersion = trusted.Timestamp.Signed.Version
	rep.SnapshotVersion = trusted.Snapshot.Signed.Version
	rep.Expires = trusted.Timestamp.Signed.Expires
	for _, exp := range []time.Time{trusted.Root.Signed.Expires, trusted.Snapshot.Signed.Expires, trusted.Targets[RoleTargets].Signed.Expires} {
		if exp.Before(rep.Expires) {
			rep.Expires = exp
		}
	}
	for _, probe := range []string{"channels/0/0.rfch", "rollout/0.json"} {
		_, _ = up.GetTargetInfo(probe) // loads and verifies the delegation
	}
	trusted = up.GetTrustedMetadataSet()
	for _, role := range []string{RoleContent, RoleRollout} {
		t := trusted.Targets[role]
		if t == nil {
			return rep, fmt.Errorf("tufrepo: verify: the %s role did not load", role)
		}
		if t.Signed.Expires.Before(rep.Expires) {
			rep.Expires = t.Signed.Expires
		}
		for name := range t.Signed.Targets {
			rep.Targets = append(rep.Targets, name)
		}
	}
	sort.Strings(rep.Targets)
	for _, name := range rep.Targets {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		tf, err := up.GetTargetInfo(name)
		if err != nil {
			return rep, fmt.Errorf("tufrepo: verify: %s: %w", name, err)
		}
		_, data, err := up.DownloadTarget(tf, filepath.Join(work, hex.EncodeToString(sha256Sum([]byte(name)))), "")
		if err != nil {
			return rep, fmt.Errorf("tufrepo: verify: download %s: %w", name, err)
		}
		if err := tf.VerifyLengthHashes(data); err != nil {
			return rep, fmt.Errorf("tufrepo: verify: %s: %w", name, err)
		}
	}
	return rep, nil
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

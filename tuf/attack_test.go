package tuf_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/stretchr/testify/require"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/tuf"
	"github.com/ringfence/ringfence/tufrepo"
)

// The attack tests follow the attack classes of the TUF specification. An
// attacker controls the server (a malicious mirror, a man in the middle) and,
// where the class says so, some keys; forged metadata is signed with keys
// read from the repository's key directory, as a thief would.

func (f *fixture) metaPath(name string) string { return filepath.Join(f.repoDir, "metadata", name) }

// roleKey returns a private key of role from the key directory.
func (f *fixture) roleKey(role string) crypto.Signer {
	f.t.Helper()
	paths, err := filepath.Glob(filepath.Join(f.keys, role+"-*.key"))
	require.NoError(f.t, err)
	require.NotEmpty(f.t, paths, role)
	return readSigner(f.t, paths[0])
}

func readSigner(t testing.TB, path string) crypto.Signer {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	block, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	require.NoError(t, err)
	return k.(crypto.Signer)
}

func signWith[T metadata.Roles](t testing.TB, m *metadata.Metadata[T], keys ...crypto.Signer) {
	m.ClearSignatures()
	for _, k := range keys {
		h := crypto.Hash(0)
		if _, ok := k.(*ecdsa.PrivateKey); ok {
			h = crypto.SHA256
		}
		s, err := signature.LoadSigner(k, h)
		require.NoError(t, err)
		_, err = m.Sign(s)
		require.NoError(t, err)
	}
}

// forge rewrites metadata file name on the server: mutate, re-sign with keys,
// write back.
func forge[T metadata.Roles](f *fixture, name string, mutate func(*metadata.Metadata[T]), keys ...crypto.Signer) []byte {
	f.t.Helper()
	m, err := (&metadata.Metadata[T]{}).FromFile(f.metaPath(name))
	require.NoError(f.t, err)
	mutate(m)
	signWith(f.t, m, keys...)
	b, err := m.ToBytes(true)
	require.NoError(f.t, err)
	require.NoError(f.t, os.WriteFile(f.metaPath(name), b, 0o644))
	return b
}

func (f *fixture) version(role string) int64 {
	f.t.Helper()
	ts, err := (&metadata.Metadata[metadata.TimestampType]{}).FromFile(f.metaPath("timestamp.json"))
	require.NoError(f.t, err)
	if role == "snapshot" {
		return ts.Signed.Meta["snapshot.json"].Version
	}
	sn, err := (&metadata.Metadata[metadata.SnapshotType]{}).FromFile(f.metaPath(fmt.Sprintf("%d.snapshot.json", ts.Signed.Meta["snapshot.json"].Version)))
	require.NoError(f.t, err)
	return sn.Signed.Meta[role+".json"].Version
}

// resignTimestamp points the timestamp at the current snapshot file again,
// freshly signed with the real timestamp key at the fixture's clock.
func (f *fixture) resignTimestamp(snapshotVersion int64) {
	f.t.Helper()
	b, err := os.ReadFile(f.metaPath(fmt.Sprintf("%d.snapshot.json", snapshotVersion)))
	require.NoError(f.t, err)
	forge(f, "timestamp.json", func(m *metadata.Metadata[metadata.TimestampType]) {
		m.Signed.Version++
		m.Signed.Expires = f.clock.Now().Add(24 * time.Hour)
		mf, err := metadata.MetaFile(snapshotVersion), error(nil)
		require.NoError(f.t, err)
		sum := sha256sum(b)
		mf.Length, mf.Hashes = int64(len(b)), metadata.Hashes{"sha256": sum}
		m.Signed.Meta["snapshot.json"] = mf
	}, f.roleKey("timestamp"))
}

func sha256sum(b []byte) []byte {
	h := crypto.SHA256.New()
	h.Write(b)
	return h.Sum(nil)
}

func published(t *testing.T) (*fixture, *tuf.Client) {
	f := newFixture(t)
	f.publish(291, 1001, channelFile(t, "good-ipc-1001"))
	c := f.client()
	require.NoError(t, c.Refresh(context.Background()))
	return f, c
}

func TestAttackArbitraryInstallation(t *testing.T) {
	f, c := published(t)
	// The mirror replaces the target's bytes.
	paths, err := filepath.Glob(filepath.Join(f.repoDir, "targets", "channels", "291", "*.1001.rfch"))
	require.NoError(t, err)
	require.Len(t, paths, 1)
	evil := channelFile(t, "cf291-shape")
	require.NoError(t, os.WriteFile(paths[0], evil, 0o644))
	_, err = c.Download(context.Background(), "channels/291/1001.rfch")
	require.Error(t, err)
	require.True(t, errorsIsAny(err, tuf.ErrMismatch, tuf.ErrTooLarge), "%v", err)
	_, err = os.Stat(filepath.Join(f.host, "downloads", "channels%2F291%2F1001.rfch"))
	require.True(t, os.IsNotExist(err), "nothing unverified is left under the final name")
}

func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if err != nil && strings.Contains(err.Error(), t.Error()) {
			return true
		}
	}
	return false
}

func TestAttackEndlessData(t *testing.T) {
	f, c := published(t)
	f.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "timestamp.json") {
			chunk := []byte(strings.Repeat(" ", 4096))
			for i := 0; i < 1<<12; i++ { // 16 MiB, far past the bound
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			return
		}
		http.FileServer(http.Dir(f.repoDir)).ServeHTTP(w, r)
	})
	err := c.Refresh(context.Background())
	require.ErrorIs(t, err, tuf.ErrTooLarge)
}

func TestAttackTargetLargerThanDeclared(t *testing.T) {
	f, c := published(t)
	paths, _ := filepath.Glob(filepath.Join(f.repoDir, "targets", "channels", "291", "*.1001.rfch"))
	good := channelFile(t, "good-ipc-1001")
	require.NoError(t, os.WriteFile(paths[0], append(good, make([]byte, 1<<20)...), 0o644))
	_, err := c.Download(context.Background(), "channels/291/1001.rfch")
	require.Error(t, err)
	require.True(t, errorsIsAny(err, tuf.ErrTooLarge, tuf.ErrMismatch), "%v", err)
}

func TestAttackFreeze(t *testing.T) {
	t.Run("timestamp", func(t *testing.T) {
		f, c := published(t)
		f.clock.Set(t0.Add(25 * time.Hour)) // the mirror keeps serving yesterday's timestamp
		require.ErrorIs(t, c.Refresh(context.Background()), tuf.ErrExpired)
	})
	t.Run("snapshot", func(t *testing.T) {
		f, c := published(t)
		f.clock.Set(t0.Add(8 * 24 * time.Hour))
		f.resignTimestamp(f.version("snapshot")) // fresh timestamp, stale snapshot
		require.ErrorIs(t, c.Refresh(context.Background()), tuf.ErrExpired)
	})
	t.Run("content", func(t *testing.T) {
		f, c := published(t)
		f.clock.Set(t0.Add(91 * 24 * time.Hour))
		// Fresh snapshot and timestamp over 90-day-old content metadata.
		sv := f.version("snapshot")
		forge(f, fmt.Sprintf("%d.snapshot.json", sv), func(m *metadata.Metadata[metadata.SnapshotType]) {
			m.Signed.Expires = f.clock.Now().Add(24 * time.Hour)
		}, f.roleKey("snapshot"))
		f.resignTimestamp(sv)
		err := c.Refresh(context.Background())
		require.ErrorIs(t, err, tuf.ErrExpired)
	})
	t.Run("root", func(t *testing.T) {
		f, c := published(t)
		f.clock.Set(t0.Add(366 * 24 * time.Hour))
		require.ErrorIs(t, c.Refresh(context.Background()), tuf.ErrExpired)
	})
}

func TestAttackMaliciousMirror(t *testing.T) {
	f, c := published(t)
	_, stranger, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	forge(f, "timestamp.json", func(m *metadata.Metadata[metadata.TimestampType]) { m.Signed.Version += 5 }, stranger)
	require.ErrorIs(t, c.Refresh(context.Background()), tuf.ErrBadSignature)
}

func TestAttackMixAndMatch(t *testing.T) {
	f, c := published(t)
	f.publish(291, 1002, channelFile(t, "good-ipc-1002"))
	// The mirror serves the new timestamp with the previous snapshot's bytes.
	sv := f.version("snapshot")
	old, err := os.ReadFile(f.metaPath(fmt.Sprintf("%d.snapshot.json", sv-1)))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(f.metaPath(fmt.Sprintf("%d.snapshot.json", sv)), old, 0o644))
	require.ErrorIs(t, c.Refresh(context.Background()), tuf.ErrMismatch)
}

func TestAttackRollback(t *testing.T) {
	t.Run("timestamp", func(t *testing.T) {
		f, c := published(t)
		old, err := os.ReadFile(f.metaPath("timestamp.json"))
		require.NoError(t, err)
		f.publish(291, 1002, channelFile(t, "good-ipc-1002"))
		require.NoError(t, c.Refresh(context.Background()))
		require.NoError(t, os.WriteFile(f.metaPath("timestamp.json"), old, 0o644))
		require.ErrorIs(t, c.Refresh(context.Background()), tuf.ErrRollback)
	})
	t.Run("snapshot", func(t *testing.T) {
		f, c := published(t)
		f.publish(291, 1002, channelFile(t, "good-ipc-1002"))
		require.NoError(t, c.Refresh(context.Background()))
		// A correctly signed timestamp naming the older snapshot.
		f.resignTimestamp(f.version("snapshot") - 1)
		require.ErrorIs(t, c.Refresh(context.Background()), tuf.ErrRollback)
	})
	t.Run("content", func(t *testing.T) {
		f, c := published(t)
		f.publish(291, 1002, channelFile(t, "good-ipc-1002"))
		require.NoError(t, c.Refresh(context.Background()))
		// A new snapshot (the thief has the snapshot key) naming the
		// previous content metadata.
		sv := f.version("snapshot")
		cv := f.version("content")
		b, err := os.ReadFile(f.metaPath(fmt.Sprintf("%d.snapshot.json", sv)))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(f.metaPath(fmt.Sprintf("%d.snapshot.json", sv+1)), b, 0o644))
		forge(f, fmt.Sprintf("%d.snapshot.json", sv+1), func(m *metadata.Metadata[metadata.SnapshotType]) {
			m.Signed.Version = sv + 1
			m.Signed.Meta["content.json"] = metadata.MetaFile(cv - 1)
		}, f.roleKey("snapshot"))
		f.resignTimestamp(sv + 1)
		require.ErrorIs(t, c.Refresh(context.Background()), tuf.ErrRollback)
	})
	t.Run("root", func(t *testing.T) {
		f, c := published(t)
		// 2.root.json that is really version 1.
		b, err := os.ReadFile(f.metaPath("1.root.json"))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(f.metaPath("2.root.json"), b, 0o644))
		require.ErrorIs(t, c.Refresh(context.Background()), tuf.ErrRollback)
	})
}

func TestAttackFastForward(t *testing.T) {
	f, c := published(t)
	// A thief with the timestamp key pushes the version sky-high.
	forge(f, "timestamp.json", func(m *metadata.Metadata[metadata.TimestampType]) { m.Signed.Version = 1 << 40 }, f.roleKey("timestamp"))
	require.NoError(t, c.Refresh(context.Background()))
	// The repository rotates the timestamp key; its next timestamp has a
	// normal version. The host recovers (trusted timestamp dropped on the
	// key rotation) and does not stay stuck on the forged version.
	require.NoError(t, f.repo.RotateKeys("timestamp", tufrepo.KeyEd25519))
	f.publish(291, 1002, channelFile(t, "good-ipc-1002"))
	require.NoError(t, c.Refresh(context.Background()))
	_, err := c.Download(context.Background(), "channels/291/1002.rfch")
	require.NoError(t, err)
}

func TestAttackKeyCompromiseBelowThreshold(t *testing.T) {
	f := &fixture{t: t, repoDir: filepath.Join(testtmp.Dir(t), "repo"), keys: filepath.Join(testtmp.Dir(t), "keys"), clock: clock.NewFake(t0), host: testtmp.Dir(t)}
	var err error
	f.repo, err = tufrepo.Init(f.repoDir, f.keys, tufrepo.InitOptions{Clock: f.clock, Threshold: 2})
	require.NoError(t, err)
	f.root, err = f.repo.RootJSON()
	require.NoError(t, err)
	serve(f)
	f.publish(291, 1001, channelFile(t, "good-ipc-1001"))
	c := f.client()
	require.NoError(t, c.Refresh(context.Background()))
	// One of two root keys stolen: a new root signed by it alone.
	b := forge(f, "1.root.json", func(m *metadata.Metadata[metadata.RootType]) {
		m.Signed.Version = 2
		m.Signed.Roles["timestamp"].KeyIDs = nil
	}, f.roleKey("root"))
	require.NoError(t, os.WriteFile(f.metaPath("2.root.json"), b, 0o644))
	require.ErrorIs(t, c.Refresh(context.Background()), tuf.ErrBadSignature)
}

func serve(f *fixture) {
	f.handler = http.FileServer(http.Dir(f.repoDir))
	f.srv = httptestServer(f)
	f.t.Cleanup(f.srv.Close)
}

func TestAttackRolloutRoleOutsideItsPaths(t *testing.T) {
	f, c := published(t)
	// The rollout key signs a target under channels/: a channel file the
	// content role never signed.
	cv := f.version("rollout")
	evil := channelFile(t, "cf291-shape")
	forge(f, fmt.Sprintf("%d.rollout.json", cv), func(m *metadata.Metadata[metadata.TargetsType]) {
		tf, err := metadata.TargetFile().FromBytes("channels/291/1003.rfch", evil, "sha256")
		require.NoError(t, err)
		m.Signed.Targets["channels/291/1003.rfch"] = tf
	}, f.roleKey("rollout"))
	// Snapshot and timestamp are honest (the attacker has only the rollout key),
	// so re-sign them over the forged rollout metadata with the real keys.
	sv := f.version("snapshot")
	forge(f, fmt.Sprintf("%d.snapshot.json", sv), func(m *metadata.Metadata[metadata.SnapshotType]) {}, f.roleKey("snapshot"))
	f.resignTimestamp(sv)
	require.NoError(t, c.Refresh(context.Background()))
	_, err := c.Target(context.Background(), "channels/291/1003.rfch")
	require.ErrorIs(t, err, tuf.ErrNotFound, "only the content role speaks for channels/*")
	// A plan naming a version content never signed leads nowhere either.
	_, err = c.Target(context.Background(), "channels/291/1005.rfch")
	require.ErrorIs(t, err, tuf.ErrNotFound)
}

func TestAttackUnsafeTargetNames(t *testing.T) {
	_, c := published(t)
	for _, name := range []string{"../etc/passwd", "channels/../../x", "/etc/passwd", `channels\291\1001.rfch`, "C:/x", "channels//1001.rfch", ""} {
		_, err := c.Download(context.Background(), name)
		require.ErrorIs(t, err, tuf.ErrBadTarget, name)
	}
}

// TestRootRotationChain: root 1 -> 2 (new key) -> 3 (threshold 2) -> 4 (new
// keys under threshold 2); a host that installed root 1 walks the chain.
func TestRootRotationChain(t *testing.T) {
	f, c := published(t)
	require.NoError(t, f.repo.RotateKeys("root", tufrepo.KeyEd25519))
	require.NoError(t, c.Refresh(context.Background()))
	require.NoError(t, f.repo.SetThreshold("root", 2, tufrepo.KeyECDSAP256))
	require.NoError(t, f.repo.RotateKeys("root", tufrepo.KeyEd25519))
	require.NoError(t, f.repo.SetThreshold("timestamp", 2, tufrepo.KeyEd25519))
	f.publish(291, 1002, channelFile(t, "good-ipc-1002"))
	require.NoError(t, c.Refresh(context.Background()))
	_, err := c.Download(context.Background(), "channels/291/1002.rfch")
	require.NoError(t, err)
	f.host = testtmp.Dir(t)
	fresh := f.client()
	require.NoError(t, fresh.Refresh(context.Background()))
	root, err := os.ReadFile(filepath.Join(f.host, "tuf", "root.json"))
	require.NoError(t, err)
	m, err := (&metadata.Metadata[metadata.RootType]{}).FromBytes(root)
	require.NoError(t, err)
	require.Equal(t, int64(5), m.Signed.Version)
	require.Equal(t, 2, m.Signed.Roles["root"].Threshold)

	// Below the new threshold: a root 6 signed by one of the two keys.
	b := forge(f, "5.root.json", func(m *metadata.Metadata[metadata.RootType]) { m.Signed.Version = 6 }, f.roleKey("root"))
	require.NoError(t, os.WriteFile(f.metaPath("6.root.json"), b, 0o644))
	require.ErrorIs(t, fresh.Refresh(context.Background()), tuf.ErrBadSignature)
}

package telemetry

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/wire"
)

// KeyName is the host key's file name in the identity directory.
const KeyName = "host.key"

// maxKeyFile bounds the key file read.
const maxKeyFile = 16 << 10

// Identity is the host's ed25519 key. The host id is derived from the
// public key, so the server can check that a batch's id and key belong
// together without a registry.
type Identity struct {
	key ed25519.PrivateKey
}

// LoadOrCreateIdentity reads dir/host.key, or creates it (PKCS#8 PEM, 0600,
// written durably) when there is none. A key file that is there but
// unreadable is an error, never silently replaced: the host's identity
// would change under the server's feet.
func LoadOrCreateIdentity(dir string) (*Identity, error) {
	path := filepath.Join(dir, KeyName)
	b, err := boundedio.ReadFile(path, maxKeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return createIdentity(dir, path)
	}
	if err != nil && !errors.Is(err, boundedio.ErrTooLarge) {
		return nil, fmt.Errorf("telemetry: host key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("telemetry: %s is not a PEM private key; restore it from a backup, or remove it to give the host a new identity", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	ek, ok := k.(ed25519.PrivateKey)
	if err != nil || !ok {
		return nil, fmt.Errorf("telemetry: %s is not an ed25519 PKCS#8 key; restore it from a backup, or remove it to give the host a new identity", path)
	}
	return &Identity{key: ek}, nil
}

func createIdentity(dir, path string) (*Identity, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("telemetry: identity directory: %w", err)
	}
	if err := atomicfile.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("telemetry: write the host key: %w", err)
	}
	return &Identity{key: k}, nil
}

// NewIdentity wraps a key (tests, and hosts that keep their key elsewhere).
func NewIdentity(k ed25519.PrivateKey) *Identity { return &Identity{key: k} }

// PublicKey is the host's public key.
func (id *Identity) PublicKey() ed25519.PublicKey { return id.key.Public().(ed25519.PublicKey) }

// HostID is the host's id (wire.HostIDOf its public key).
func (id *Identity) HostID() string { return wire.HostIDOf(id.PublicKey()) }

// Sign signs body.
func (id *Identity) Sign(body []byte) []byte { return ed25519.Sign(id.key, body) }

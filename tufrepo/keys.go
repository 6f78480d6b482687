package tufrepo

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/boundedio"
)

// KeyType names a signing algorithm.
type KeyType string

// The key types a repository can use.
const (
	KeyEd25519   KeyType = "ed25519"
	KeyECDSAP256 KeyType = "ecdsa-p256"
)

// maxKeyFile bounds a private key file read from disk.
const maxKeyFile = 16 << 10

// privateKey is one role key: the private half and its TUF public key.
type privateKey struct {
	role   string
	file   string
	signer crypto.Signer
	pub    *metadata.Key
	id     string
}

func generateKey(kt KeyType) (crypto.Signer, error) {
	switch kt {
	case KeyEd25519, "":
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	case KeyECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return nil, kt.check()
}

// check refuses a key type the repository cannot make.
func (kt KeyType) check() error {
	switch kt {
	case KeyEd25519, KeyECDSAP256, "":
		return nil
	}
	return fmt.Errorf("tufrepo: unknown key type %q; use %s or %s", kt, KeyEd25519, KeyECDSAP256)
}

func newPrivateKey(role, file string, s crypto.Signer) (*privateKey, error) {
	pub, err := metadata.KeyFromPublicKey(s.Public())
	if err != nil {
		return nil, fmt.Errorf("tufrepo: %s key: %w", role, err)
	}
	id, err := pub.ID()
	if err != nil {
		return nil, fmt.Errorf("tufrepo: %s key: %w", role, err)
	}
	return &privateKey{role: role, file: file, signer: s, pub: pub, id: id}, nil
}

// freshKey generates a key for role; its file name follows from its id.
func freshKey(dir, role string, kt KeyType) (*privateKey, error) {
	s, err := generateKey(kt)
	if err != nil {
		return nil, err
	}
	k, err := newPrivateKey(role, "", s)
	if err != nil {
		return nil, err
	}
	k.file = filepath.Join(dir, keyFile(role, k.id))
	return k, nil
}

// writeKey stores a private key as PKCS#8 PEM, mode 0600, durably.
func writeKey(dir, name string, s crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(s)
	if err != nil {
		return fmt.Errorf("tufrepo: encode key %s: %w", name, err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return atomicfile.WriteFile(filepath.Join(dir, name), data, 0o600)
}

func readKey(role, path string) (*privateKey, error) {
	data, err := boundedio.ReadFile(path, maxKeyFile)
	if errors.Is(err, boundedio.ErrTooLarge) {
		return nil, fmt.Errorf("tufrepo: %w; not a key file: move it out of the key directory", err)
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("tufrepo: %s: not a PKCS#8 PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("tufrepo: %s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("tufrepo: %s: unsupported key", path)
	}
	return newPrivateKey(role, path, s)
}

// keyFile is the file name of a role key: the role and the start of the key
// id, so a rotation writes the new keys beside the old ones and removes the
// old only after the metadata trusting the new ones is written.
func keyFile(role, id string) string { return role + "-" + id[:16] + ".key" }

// loadRoleKeys returns every key file of role in dir (role-<id>.key),
// sorted by name.
func loadRoleKeys(dir, role string) ([]*privateKey, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("tufrepo: keys: %w", err)
	}
	var out []*privateKey
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, role+"-") || !strings.HasSuffix(n, ".key") {
			continue
		}
		k, err := readKey(role, filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].file < out[j].file })
	return out, nil
}

// ErrNoKey is returned when an operation needs a role's private key that the
// key directory does not hold (the root key kept offline, say).
var ErrNoKey = errors.New("tufrepo: private key not in the key directory")

// signerFor returns the keys of role that the role's metadata trusts.
func signersFor(dir, role string, trusted []string) ([]*privateKey, error) {
	keys, err := loadRoleKeys(dir, role)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var out []*privateKey
	for _, k := range keys {
		for _, id := range trusted {
			if k.id == id {
				out = append(out, k)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: role %s (looked for %s-*.key in %s)", ErrNoKey, role, role, dir)
	}
	return out, nil
}

func sign[T metadata.Roles](m *metadata.Metadata[T], keys []*privateKey) error {
	m.ClearSignatures()
	for _, k := range keys {
		h := crypto.Hash(0) // ed25519 signs the message itself
		if _, ok := k.signer.(*ecdsa.PrivateKey); ok {
			h = crypto.SHA256 // ecdsa-sha2-nistp256
		}
		s, err := signature.LoadSigner(k.signer, h)
		if err != nil {
			return fmt.Errorf("tufrepo: signer for %s: %w", k.role, err)
		}
		if _, err := m.Sign(s); err != nil {
			return fmt.Errorf("tufrepo: sign with %s: %w", k.role, err)
		}
	}
	return nil
}

package installer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ringfence/ringfence/internal/boundedio"
)

// ManifestName is the slot manifest's file name inside a slot directory.
const ManifestName = "MANIFEST.json"

// ManifestFormat is the "format" member of a slot manifest.
const ManifestFormat = "ringfence-slot/v1"

// MaxManifestSize bounds a slot manifest read from disk.
const MaxManifestSize = 64 << 10

// ContentName is the name of the channel file inside a slot.
const ContentName = "content.rfch"

// Manifest lists every file of a slot with its size and SHA-256. The boot
// record holds the SHA-256 of the manifest's bytes, so one digest in the
// record pins every byte of the slot.
type Manifest struct {
	Format         string         `json:"format"`
	Channel        uint32         `json:"channel"`
	ContentVersion uint32         `json:"content_version"`
	Files          []ManifestFile `json:"files"`
}

// ManifestFile is one file of a slot.
type ManifestFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// encode returns the manifest's canonical bytes (files sorted by name) and
// their digest.
func (m Manifest) encode() ([]byte, [32]byte, error) {
	m.Format = ManifestFormat
	m.Files = slices.Clone(m.Files)
	slices.SortFunc(m.Files, func(a, b ManifestFile) int { return strings.Compare(a.Name, b.Name) })
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, [32]byte{}, err
	}
	b = append(b, '\n')
	return b, sha256.Sum256(b), nil
}

// VerifySlot checks that dir holds exactly what the manifest whose digest is
// want describes: the manifest's own digest, then every listed file's size
// and SHA-256. It reads at most MaxManifestSize bytes of manifest and each
// file's declared size (plus one byte, to catch a longer file).
func VerifySlot(dir string, want [32]byte) (Manifest, error) {
	m, err := readManifest(dir, want)
	if err != nil {
		return Manifest{}, err
	}
	for _, f := range m.Files {
		if err := verifyFile(dir, f); err != nil {
			return Manifest{}, err
		}
	}
	return m, nil
}

// ReadContent returns the channel file of the slot in dir, the bytes a
// loader hands to the interpreter: the manifest must have the digest want,
// and the content is read once, bounded by the manifest's size, and checked
// against the manifest's SHA-256 in memory, so what is loaded is exactly what
// was verified (no window between a check and a second read).
func ReadContent(dir string, want [32]byte) ([]byte, error) {
	m, err := readManifest(dir, want)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(m.Files, func(f ManifestFile) bool { return f.Name == ContentName })
	if i < 0 {
		return nil, fmt.Errorf("%w: %s: manifest lists no %s", ErrSlotCorrupt, dir, ContentName)
	}
	f := m.Files[i]
	sum, err := hex.DecodeString(f.SHA256)
	if err != nil || len(sum) != sha256.Size || f.Size < 0 {
		return nil, fmt.Errorf("%w: %s: %s: bad size or sha256 in manifest", ErrSlotCorrupt, dir, f.Name)
	}
	data, err := boundedio.ReadFile(filepath.Join(dir, f.Name), f.Size)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrSlotCorrupt, dir, err)
	}
	if got := sha256.Sum256(data); int64(len(data)) != f.Size || !bytes.Equal(got[:], sum) {
		return nil, fmt.Errorf("%w: %s: %s does not match its size and SHA-256 in the manifest", ErrSlotCorrupt, dir, f.Name)
	}
	return data, nil
}

// readManifest reads and decodes the manifest of the slot in dir, which must
// have the digest want.
func readManifest(dir string, want [32]byte) (Manifest, error) {
	raw, err := boundedio.ReadFile(filepath.Join(dir, ManifestName), MaxManifestSize)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: %s: %v", ErrSlotCorrupt, dir, err)
	}
	if got := sha256.Sum256(raw); got != want {
		return Manifest{}, fmt.Errorf("%w: %s: manifest digest %x, boot record expects %x", ErrSlotCorrupt, dir, got[:8], want[:8])
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil || m.Format != ManifestFormat || len(m.Files) == 0 {
		return Manifest{}, fmt.Errorf("%w: %s: manifest unreadable (format %q): %v", ErrSlotCorrupt, dir, m.Format, err)
	}
	return m, nil
}

func verifyFile(dir string, f ManifestFile) error {
	if !validName(f.Name) || f.Size < 0 {
		return fmt.Errorf("%w: %s: manifest lists bad file name %q", ErrSlotCorrupt, dir, f.Name)
	}
	want, err := hex.DecodeString(f.SHA256)
	if err != nil || len(want) != sha256.Size {
		return fmt.Errorf("%w: %s: %s: bad sha256 in manifest", ErrSlotCorrupt, dir, f.Name)
	}
	fh, err := os.Open(filepath.Join(dir, f.Name))
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrSlotCorrupt, dir, err)
	}
	defer fh.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(fh, f.Size+1))
	if err != nil {
		return fmt.Errorf("%w: %s: read %s: %v", ErrSlotCorrupt, dir, f.Name, err)
	}
	if n != f.Size {
		return fmt.Errorf("%w: %s: %s is %d bytes or more, manifest says %d", ErrSlotCorrupt, dir, f.Name, n, f.Size)
	}
	if !bytes.Equal(h.Sum(nil), want) {
		return fmt.Errorf("%w: %s: %s does not match its SHA-256 in the manifest", ErrSlotCorrupt, dir, f.Name)
	}
	return nil
}

// validName reports whether name is a plain file name: no separators, no
// "..", nothing a manifest could use to point outside its slot.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && name != ManifestName &&
		!strings.ContainsAny(name, `/\:`) && filepath.Base(name) == name
}

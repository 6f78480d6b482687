package tuf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/ringfence/ringfence/internal/atomicfile"
)

// store is the trusted metadata on disk (<root>/tuf): one file per role,
// named <role>.json, holding the bytes exactly as they verified. Every
// write goes through the durable-write helper, so a crash or power cut
// leaves either the old file or the new one.
type store struct{ dir string }

// topLevel are the roles whose file names a delegated role may not take.
var topLevel = map[string]bool{metadata.ROOT: true, metadata.TIMESTAMP: true, metadata.SNAPSHOT: true, metadata.TARGETS: true}

// roleFile is the file name of role's metadata. Top-level roles keep their
// names; a delegated role's name is escaped so that every name maps to one
// safe file name on Linux and Windows: bytes other than letters, digits,
// '-' and '_' become %XX, as does a leading '.', and the first letter of a
// name Windows reserves for a device (con, nul, com1, ...).
func roleFile(role string) string {
	if topLevel[role] {
		return role + ".json"
	}
	var b strings.Builder
	for i := 0; i < len(role); i++ {
		ch := role[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '-', ch == '_':
			if i == 0 && windowsDevice(role) {
				fmt.Fprintf(&b, "%%%02X", ch)
				continue
			}
			b.WriteByte(ch)
		case ch == '.' && i > 0:
			b.WriteByte(ch)
		default:
			fmt.Fprintf(&b, "%%%02X", ch)
		}
	}
	return b.String() + ".json"
}

// windowsDevice reports whether name (before any dot) is a device name
// Windows reserves in every directory.
func windowsDevice(name string) bool {
	base, _, _ := strings.Cut(strings.ToLower(name), ".")
	switch base {
	case "con", "prn", "aux", "nul":
		return true
	}
	if len(base) == 4 && (strings.HasPrefix(base, "com") || strings.HasPrefix(base, "lpt")) && base[3] >= '0' && base[3] <= '9' {
		return true
	}
	return false
}

// load returns role's trusted bytes, or nil if none are stored. A stored
// file larger than limit is an error (ErrTooLarge): the host wrote it, so
// something else did.
func (s store) load(role string, limit int64) ([]byte, error) {
	b, err := readBounded(filepath.Join(s.dir, roleFile(role)), limit)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tuf: trusted %s metadata: %w", role, err)
	}
	return b, nil
}

// persist durably replaces role's trusted bytes.
func (s store) persist(role string, data []byte) error {
	if err := atomicfile.WriteFile(filepath.Join(s.dir, roleFile(role)), data, 0o600); err != nil {
		return fmt.Errorf("tuf: persist %s: %w", role, err)
	}
	return nil
}

// remove deletes role's trusted bytes (5.3.11: a rotated timestamp or
// snapshot key), durably.
func (s store) remove(role string) error {
	err := os.Remove(filepath.Join(s.dir, roleFile(role)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil {
		err = atomicfile.SyncDir(s.dir)
	}
	if err != nil {
		return fmt.Errorf("tuf: forget %s: %w", role, err)
	}
	return nil
}

package installer_test

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"

	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/testtmp"
)

// FuzzVerifySlot: any manifest bytes never panic VerifySlot, never make it
// read outside the slot directory, and a manifest it accepts lists only
// plain names of files that are there.
func FuzzVerifySlot(f *testing.F) {
	f.Add([]byte(`{"format":"ringfence-slot/v1","channel":291,"content_version":1001,"files":[{"name":"content.rfch","size":5,"sha256":"4fc8b6e3b3a1b1e6f5b0a0c6a4bd9e8ab3fb85ad0a1e38f6f0b35fbc1d9b2a00"}]}`))
	f.Add([]byte(`{"format":"ringfence-slot/v1","files":[{"name":"../outside","size":1,"sha256":""}]}`))
	f.Add([]byte(`{}`))
	root := testtmp.Dir(f)
	slot := filepath.Join(root, "slot")
	if err := os.Mkdir(slot, 0o700); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(slot, installer.ContentName), []byte("hello"), 0o600); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "outside"), []byte("x"), 0o600); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, manifest []byte) {
		if err := os.WriteFile(filepath.Join(slot, installer.ManifestName), manifest, 0o600); err != nil {
			t.Fatal(err)
		}
		m, err := installer.VerifySlot(slot, sha256.Sum256(manifest))
		if err != nil {
			return
		}
		for _, file := range m.Files {
			if file.Name != installer.ContentName {
				t.Fatalf("accepted a manifest naming %q", file.Name)
			}
		}
	})
}

package vendorbuild

import (
	"os"
	"testing"
)

// TestPlaceholdersStayEmpty: the files in embedded/ are placeholders that
// only a vendor build overlays. A value committed into one would end up in
// every build, tests included, as if a vendor had chosen it.
func TestPlaceholdersStayEmpty(t *testing.T) {
	for _, f := range []string{RootFile, ServerURLFile, CapabilitiesFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != 0 {
			t.Errorf("%s holds %d bytes; it must stay empty (make dist VENDOR_ROOT=... SERVER_URL=... embeds the vendor's values)", f, len(b))
		}
	}
	if Embedded() || Root() != nil || ServerURL() != "" || Capabilities() != nil {
		t.Error("an ordinary build embeds vendor values")
	}
}

func TestSHA256(t *testing.T) {
	if got := SHA256([]byte("abc")); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatal(got)
	}
}

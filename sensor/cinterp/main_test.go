//go:build cgo

package cinterp

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

var update = flag.Bool("update", false, "rewrite csource.go's digest of sensor/c after a change to the C")

// sourceDigest hashes the C sources the binding includes, each with its
// name and length.
func sourceDigest() (string, error) {
	h := sha256.New()
	for _, name := range []string{"rfinterp.h", "rfinterp.c"} {
		b, err := os.ReadFile(filepath.Join("..", "c", name))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// TestMain runs no test against a stale build of the C (see
// cSourceDigest).
func TestMain(m *testing.M) {
	flag.Parse()
	got, err := sourceDigest()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cinterp:", err)
		os.Exit(1)
	}
	if got != cSourceDigest {
		if !*update {
			fmt.Fprintf(os.Stderr, "cinterp: sensor/c/rfinterp.h or rfinterp.c changed since this package was built against them, and cgo does not notice changes outside the package's directory: the tests would run the old C.\n"+
				"Run `go test ./sensor/cinterp -update` (it rewrites the digest in sensor/cinterp/csource.go), then test again.\n")
			os.Exit(1)
		}
		src, err := os.ReadFile("csource.go")
		if err == nil {
			re := regexp.MustCompile(`const cSourceDigest = "[0-9a-f]*"`)
			src = re.ReplaceAll(src, []byte(`const cSourceDigest = "`+got+`"`))
			err = os.WriteFile("csource.go", src, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "cinterp: update:", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "cinterp: csource.go now holds the digest of the C; run the tests again (this binary was built from the old C)\n")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

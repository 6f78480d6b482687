// Package capool reads a file of PEM CA certificates into a pool of its
// own: the CA a host pins for the rollout server (ringfenced's ca_file),
// and the one an operator command trusts (--ca-file). Both sides use it,
// so it sits apart from either.
package capool

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/ringfence/ringfence/internal/boundedio"
)

// MaxFile bounds the file read.
const MaxFile = 1 << 20

// Load reads PEM certificates from path (at most MaxFile bytes) into a
// pool of their own. Every CERTIFICATE block must parse and there must be
// at least one; other blocks (a key put in by mistake) are ignored. An
// empty or unreadable file is an error, not an empty pool: a pool that
// trusts nothing would fail every connection later instead of at start-up.
func Load(path string) (*x509.CertPool, error) {
	b, err := boundedio.ReadFile(path, MaxFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate (want one or more \"-----BEGIN CERTIFICATE-----\" blocks: the server's CA)", path)
	}
	return pool, nil
}

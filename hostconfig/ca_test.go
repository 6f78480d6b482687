package hostconfig_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/capool"
)

// caPEM is a throwaway self-signed CA certificate, PEM.
func caPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ringfence test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestCAFile: ca_file is checked at start-up (a file that is there and
// holds certificates, https URLs only), and every error names the key.
func TestCAFile(t *testing.T) {
	ca := caPEM(t)
	const pin = `ca_file = "ca.pem"`
	const httpsEndpoint = "[telemetry]\nendpoint = \"https://rollout.example.com\""
	for _, tc := range []struct {
		name  string
		file  []byte // written as ca.pem when not nil
		repo  string // replaces base's repository when set
		extra string
		want  string // "" for no error; "FILE" stands for ca.pem's path
	}{
		{name: "pinned", file: ca, extra: pin + "\n" + httpsEndpoint},
		{name: "bundle with a key in it", file: append(append([]byte{}, ca...), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})...), extra: pin},
		{name: "http without ca_file", repo: "http://updates.example.com/repo", extra: "[telemetry]\nendpoint = \"http://rollout.example.com\""},
		{name: "missing file", extra: pin, want: "ca_file: open FILE"},
		{name: "not PEM", file: []byte("not a certificate\n"), extra: pin, want: "ca_file: FILE holds no PEM certificate"},
		{name: "empty", file: []byte{}, extra: pin, want: "ca_file: FILE holds no PEM certificate"},
		{name: "bad certificate", file: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), extra: pin, want: "ca_file: FILE: certificate 1: x509: "},
		{name: "too large", file: make([]byte, capool.MaxFile+1), extra: pin, want: "ca_file: FILE is larger than the limit"},
		{name: "http repository", file: ca, repo: "http://updates.example.com/repo", extra: pin,
			want: "ca_file pins TLS, but repository is http://updates.example.com/repo; use https"},
		{name: "http endpoint", file: ca, extra: pin + "\n[telemetry]\nendpoint = \"http://rollout.example.com\"",
			want: "ca_file pins TLS, but telemetry.endpoint is http://rollout.example.com; use https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := dir(t)
			file := filepath.Join(d, "ca.pem")
			if tc.file != nil {
				require.NoError(t, os.WriteFile(file, tc.file, 0o600))
			}
			src := base
			if tc.repo != "" {
				src = strings.Replace(src, "https://updates.example.com/repo", tc.repo, 1)
			}
			c, err := hostconfig.Parse([]byte(src+tc.extra+"\n"), d)
			if tc.want != "" {
				require.ErrorContains(t, err, strings.ReplaceAll(tc.want, "FILE", file))
				return
			}
			require.NoError(t, err)
			pool, err := c.CAPool()
			require.NoError(t, err)
			if tc.file == nil {
				require.Empty(t, c.CAFile)
				require.Nil(t, pool, "no ca_file: the system's roots")
				return
			}
			require.Equal(t, file, c.CAFile, "ca_file is taken from the config file's directory")
			require.NotNil(t, pool)
		})
	}
}

// TestCAPoolUnset: no ca_file, no pool (the system's roots).
func TestCAPoolUnset(t *testing.T) {
	pool, err := hostconfig.Default().CAPool()
	require.NoError(t, err)
	require.Nil(t, pool)
}

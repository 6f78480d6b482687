package main

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/testca"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/telemetry"
)

// tlsServer is an HTTPS server on loopback whose certificate ca issued.
func tlsServer(t *testing.T, ca *testca.CA) *httptest.Server {
	t.Helper()
	cert, _, _ := ca.Issue(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "pinned")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// TestHTTPClientPinsCA: with ca_file, the daemon's client connects to a
// server whose certificate that CA issued, and to no other.
func TestHTTPClientPinsCA(t *testing.T) {
	dir := testtmp.Dir(t)
	ca1, ca2 := testca.New(t, "CA1"), testca.New(t, "CA2")
	srv := tlsServer(t, ca1)
	for _, tc := range []struct {
		name    string
		caFile  []byte
		trusted bool
	}{
		{"pinned CA1", ca1.PEM, true},
		{"pinned CA2", ca2.PEM, false},
		{"both", append(append([]byte{}, ca2.PEM...), ca1.PEM...), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, tc.name+".pem")
			require.NoError(t, os.WriteFile(f, tc.caFile, 0o600))
			c, err := httpClient(hostconfig.Config{CAFile: f})
			require.NoError(t, err)
			require.Equal(t, httpTimeout, c.Timeout)
			err = get(c, srv.URL)
			if tc.trusted {
				require.NoError(t, err)
				return
			}
			var ua x509.UnknownAuthorityError
			require.ErrorAs(t, err, &ua)
		})
	}
	_, err := httpClient(hostconfig.Config{CAFile: filepath.Join(dir, "missing.pem")})
	require.ErrorContains(t, err, "ca_file: open ")
}

// TestDaemonOptionsShareClient: the TUF client and the telemetry sender get
// the same pinned client.
func TestDaemonOptionsShareClient(t *testing.T) {
	dir := testtmp.Dir(t)
	ca1 := testca.New(t, "CA1")
	srv := tlsServer(t, ca1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "root.json"), []byte("{}"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ca.pem"), ca1.PEM, 0o600))
	cfg, err := hostconfig.Parse([]byte(`root = "root"
repository = "`+srv.URL+`/repo"
trusted_root = "root.json"
channel = 291
ca_file = "ca.pem"
[telemetry]
endpoint = "`+srv.URL+`"
`), dir)
	require.NoError(t, err)
	opts, err := daemonOptions(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NotNil(t, opts.HTTPClient)
	sender, ok := opts.Sender.(*telemetry.Sender)
	require.True(t, ok, "the sender is a *telemetry.Sender")
	require.Same(t, opts.HTTPClient, sender.Client, "one client for the repository and the telemetry endpoint")
	require.NoError(t, get(opts.HTTPClient, srv.URL))
}

// systemRootsEnv marks the child of TestPinnedCAIgnoresSystemRoots.
const systemRootsEnv = "RINGFENCED_TEST_SYSTEM_ROOTS"

// TestPinnedCAIgnoresSystemRoots: a server whose CA the system's roots
// trust is refused when ca_file names another CA. The system roots are
// loaded once per process, so the check runs in a child process whose
// SSL_CERT_FILE holds CA1 (Unix; elsewhere the child skips).
func TestPinnedCAIgnoresSystemRoots(t *testing.T) {
	if os.Getenv(systemRootsEnv) == "1" {
		pinnedChild(t)
		return
	}
	dir := testtmp.Dir(t)
	ca1, ca2 := testca.New(t, "CA1"), testca.New(t, "CA2")
	srv := tlsServer(t, ca1)
	ca1File, ca2File := filepath.Join(dir, "ca1.PEM"), filepath.Join(dir, "ca2.PEM")
	require.NoError(t, os.WriteFile(ca1File, ca1.PEM, 0o600))
	require.NoError(t, os.WriteFile(ca2File, ca2.PEM, 0o600))
	self, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(self, "-test.run=^TestPinnedCAIgnoresSystemRoots$", "-test.v")
	cmd.Env = append(os.Environ(), systemRootsEnv+"=1", "SSL_CERT_FILE="+ca1File, "SSL_CERT_DIR="+testtmp.Dir(t),
		"RINGFENCED_TEST_URL="+srv.URL, "RINGFENCED_TEST_CA2="+ca2File)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	if !strings.Contains(string(out), "--- PASS: TestPinnedCAIgnoresSystemRoots") {
		t.Skipf("the child could not put CA1 in the system roots: %s", out)
	}
}

func pinnedChild(t *testing.T) {
	url := os.Getenv("RINGFENCED_TEST_URL")
	plain, err := httpClient(hostconfig.Config{})
	require.NoError(t, err)
	if err := get(plain, url); err != nil {
		t.Skipf("SSL_CERT_FILE does not set the system roots here: %v", err)
	}
	pinned, err := httpClient(hostconfig.Config{CAFile: os.Getenv("RINGFENCED_TEST_CA2")})
	require.NoError(t, err)
	var ua x509.UnknownAuthorityError
	require.ErrorAs(t, get(pinned, url), &ua, "ca_file CA2: the system roots (which hold CA1) are not consulted")
}

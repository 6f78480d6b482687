package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/syncbuf"
	"github.com/ringfence/ringfence/internal/testca"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/server"
)

// caClientFor is an HTTP client that trusts only ca.
func caClientFor(ca *testca.CA) *http.Client { return pinnedClient(ca.Pool()) }

// issue is ca.Issue's PEM files.
func issue(t *testing.T, ca *testca.CA) (certPEM, keyPEM []byte) {
	_, certPEM, keyPEM = ca.Issue(t)
	return certPEM, keyPEM
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

// newRepo makes an empty repository and its keys.
func newRepo(t testing.TB) (repo, keys string) {
	t.Helper()
	repo, keys = testtmp.Dir(t), testtmp.Dir(t)
	_, errOut, code := runCLI(t, "repo", "init", "--repo", repo, "--keys", keys)
	require.Equal(t, 0, code, errOut)
	return repo, keys
}

// serveProc is a `ringfence-server serve` child process.
type serveProc struct {
	cmd  *exec.Cmd
	url  string // as printed: http:// or https://
	logs *syncbuf.Buffer
}

// startServe runs serve on a free loopback port with the extra flags, and
// returns once it printed its URL. The process is killed when the test ends.
func startServe(t testing.TB, repo, keys, state string, extra ...string) *serveProc {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	args := append([]string{"serve", "--repo", repo, "--keys", keys, "--state", state, "--addr", "127.0.0.1:0"}, extra...)
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), asMainEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	p := &serveProc{cmd: cmd, logs: &syncbuf.Buffer{}}
	cmd.Stderr = p.logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if u, ok := strings.CutPrefix(lines.Text(), "dashboard: "); ok {
			var token bool
			p.url, _, token = strings.Cut(u, "/#token=")
			require.True(t, token, "serve prints the dashboard's URL with the token in its fragment: %s", u)
			break
		}
	}
	require.NotEmpty(t, p.url, "serve prints its URL; logs: %s", p.logs.String())
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return p
}

// TestServeTLS: serve with --tls-cert/--tls-key answers HTTPS only, with
// the certificate given; operator commands reach it with --ca-file.
func TestServeTLS(t *testing.T) {
	repo, keys := newRepo(t)
	state, certs := testtmp.Dir(t), testtmp.Dir(t)
	ca, other := testca.New(t, "ringfence test CA"), testca.New(t, "some other CA")
	certPEM, keyPEM := issue(t, ca)
	caFile := writeFile(t, certs, "ca.pem", ca.PEM)
	srv := startServe(t, repo, keys, state,
		"--tls-cert", writeFile(t, certs, "server.pem", certPEM), "--tls-key", writeFile(t, certs, "server.key", keyPEM))

	require.True(t, strings.HasPrefix(srv.url, "https://127.0.0.1:"), srv.url)
	recorded, err := os.ReadFile(filepath.Join(state, server.AddrFile))
	require.NoError(t, err)
	require.Equal(t, srv.url, strings.TrimSpace(string(recorded)), "serve.url holds the https URL")

	t.Run("pinned CA", func(t *testing.T) {
		resp, err := caClientFor(ca).Get(srv.url + "/metadata/timestamp.json")
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		require.Contains(t, string(body), `"_type": "timestamp"`)
		require.Equal(t, uint16(tls.VersionTLS13), resp.TLS.Version)
	})
	t.Run("plain http", func(t *testing.T) {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + strings.TrimPrefix(srv.url, "https://") + "/metadata/timestamp.json")
		if err != nil {
			return // refused outright is as good
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		require.Contains(t, string(body), "HTTPS server")
		require.NotContains(t, string(body), "timestamp")
	})
	t.Run("other CA", func(t *testing.T) {
		_, err := caClientFor(other).Get(srv.url + "/metadata/timestamp.json")
		var ua x509.UnknownAuthorityError
		require.ErrorAs(t, err, &ua)
	})
	t.Run("system roots", func(t *testing.T) {
		_, err := (&http.Client{Timeout: 10 * time.Second}).Get(srv.url + "/metadata/timestamp.json")
		var cv *tls.CertificateVerificationError
		require.ErrorAs(t, err, &cv)
	})

	tokenFile := filepath.Join(state, server.TokenFile)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in stdout for code 0, else in stderr
	}{
		{"server and ca-file", []string{"--server", srv.url, "--token-file", tokenFile, "--ca-file", caFile}, 0, "no rollouts"},
		{"state and ca-file", []string{"--state", state, "--ca-file", caFile}, 0, "no rollouts"},
		{"server without ca-file", []string{"--server", srv.url, "--token-file", tokenFile}, 2, "give --ca-file"},
		{"state without ca-file", []string{"--state", state}, 2, "give --ca-file"},
		{"wrong ca-file", []string{"--server", srv.url, "--token-file", tokenFile, "--ca-file", writeFile(t, certs, "other.pem", other.PEM)}, 2, "certificate signed by unknown authority"},
		{"ca-file not PEM", []string{"--server", srv.url, "--token-file", tokenFile, "--ca-file", tokenFile}, 2, "--ca-file: " + tokenFile + " holds no PEM certificate"},
	} {
		t.Run("rollout status/"+tc.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, append([]string{"rollout", "status"}, tc.args...)...)
			require.Equal(t, tc.code, code, "stdout: %s\nstderr: %s", out, errOut)
			if tc.code == 0 {
				require.Contains(t, out, tc.want)
			} else {
				require.Contains(t, errOut, tc.want)
			}
		})
	}

	// The server is still the one answering: nothing above fell back to
	// opening its state directory.
	require.NoError(t, srv.cmd.Process.Signal(os.Interrupt))
	done := make(chan error, 1)
	go func() { done <- srv.cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "serve stops cleanly; logs: %s", srv.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop on SIGINT")
	}
}

// TestServeTLSFlags: a certificate and key that cannot serve are refused at
// start-up, saying which flag and what to give.
func TestServeTLSFlags(t *testing.T) {
	dir := testtmp.Dir(t)
	ca := testca.New(t, "ringfence test CA")
	certPEM, keyPEM := issue(t, ca)
	_, otherKey := issue(t, ca)
	cert, key := writeFile(t, dir, "server.pem", certPEM), writeFile(t, dir, "server.key", keyPEM)
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"cert without key", []string{"--tls-cert", cert}, "--tls-cert and --tls-key go together"},
		{"key without cert", []string{"--tls-key", key}, "--tls-cert and --tls-key go together"},
		{"missing cert", []string{"--tls-cert", missing, "--tls-key", key}, "--tls-cert: open " + missing},
		{"missing key", []string{"--tls-cert", cert, "--tls-key", missing}, "--tls-key: open " + missing},
		{"mismatched pair", []string{"--tls-cert", cert, "--tls-key", writeFile(t, dir, "other.key", otherKey)}, "private key does not match public key"},
		{"not PEM", []string{"--tls-cert", writeFile(t, dir, "junk.pem", []byte("junk")), "--tls-key", key}, "are not a usable pair"},
		{"key as cert", []string{"--tls-cert", key, "--tls-key", key}, "are not a usable pair"},
		{"read timeout", []string{"--read-timeout", "0s"}, "--read-timeout 0s: want a positive duration"},
		{"max conns", []string{"--max-conns", "0"}, "--max-conns 0: want at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := testtmp.Dir(t)
			repo, keys := newRepo(t)
			_, errOut, code := runCLI(t, append([]string{"serve", "--repo", repo, "--keys", keys, "--state", state, "--addr", "127.0.0.1:0"}, tc.args...)...)
			require.Equal(t, 2, code, errOut)
			require.Contains(t, errOut, tc.want)
			_, err := os.Stat(filepath.Join(state, server.AddrFile))
			require.True(t, errors.Is(err, os.ErrNotExist), "a refused start records no URL")
		})
	}
}

// TestDefaultMaxConns: three quarters of the open-file limit, 64..10000.
func TestDefaultMaxConns(t *testing.T) {
	for _, tc := range []struct {
		limit uint64
		want  int
	}{
		{0, minConns}, {64, minConns}, {1024, 768}, {4096, 3072}, {20000, maxDefaultConns}, {1 << 63, maxDefaultConns},
	} {
		require.Equal(t, tc.want, connsFor(tc.limit), "limit %d", tc.limit)
	}
	n := defaultMaxConns()
	require.GreaterOrEqual(t, n, minConns)
	require.LessOrEqual(t, n, maxDefaultConns)
}

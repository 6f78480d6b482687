package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"

	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/internal/capool"
)

// Connection cap defaults (--max-conns).
const (
	// minConns is the smallest default cap, whatever the open-file limit.
	minConns = 64
	// maxDefaultConns bounds the default cap: more connections than that is
	// a fleet that wants several servers, not a bigger file table.
	maxDefaultConns = 10000
)

// maxPEMFile bounds a certificate, key or CA file read at start-up.
const maxPEMFile = 1 << 20

// connsFor is the default connection cap under an open-file limit: three
// quarters of it, leaving the rest for what the server opens itself (the
// database, the repository files it serves, logs); at most
// maxDefaultConns and never below minConns.
func connsFor(limit uint64) int {
	n := limit / 4 * 3
	switch {
	case n > maxDefaultConns:
		return maxDefaultConns
	case n < minConns:
		return minConns
	}
	return int(n)
}

// serverTLS reads --tls-cert and --tls-key: nil for neither (plain HTTP),
// an error that says what to fix for one without the other, a file that
// cannot be read, or a key that is not the certificate's. Both files are
// read through boundedio (the check tls.LoadX509KeyPair makes, on bounded
// reads).
func serverTLS(certFile, keyFile string) (*tls.Config, error) {
	switch {
	case certFile == "" && keyFile == "":
		return nil, nil
	case certFile == "" || keyFile == "":
		return nil, errors.New("--tls-cert and --tls-key go together: give both to serve HTTPS, or neither for plain HTTP")
	}
	certPEM, err := boundedio.ReadFile(certFile, maxPEMFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert: %w (give the server's certificate chain, PEM)", err)
	}
	keyPEM, err := boundedio.ReadFile(keyFile, maxPEMFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-key: %w (give the certificate's private key, PEM)", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s and --tls-key %s are not a usable pair: %w (both PEM; the key must be the certificate's)", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// listen opens addr with at most maxConns connections open at once. A
// connection beyond the cap waits in the kernel's accept queue, where it
// holds no descriptor of ours, until a slot frees: the read deadlines free
// slots held by slow clients, so the cap turns "too many open files" (which
// also breaks the database and the files the server opens) into a wait.
func listen(addr string, maxConns int) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return netutil.LimitListener(ln, maxConns), nil
}

// httpServer is serve's http.Server. Its deadlines follow from what it
// takes in: hosts send telemetry batches of at most 1 MiB and operators API
// requests of at most 64 KiB, so reading a whole request, headers and body,
// gets readTimeout (15 s by default: 1 MiB at ~70 KB/s), not the minute a
// slow client used to hold a connection (and a descriptor) for. A client
// that trickles a byte now and then is cut off at readTimeout however
// steadily it sends. Headers get ReadHeaderTimeout, and the TLS handshake
// the shorter of the two. WriteTimeout is long because hosts download
// targets (channel files, ringfenced binaries) through it; IdleTimeout
// lets an idle keep-alive connection give its slot back.
func httpServer(h http.Handler, readTimeout time.Duration, tlsConf *tls.Config) *http.Server {
	return &http.Server{Handler: h, TLSConfig: tlsConf,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: readTimeout,
		WriteTimeout: 5 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
}

// caClient is the operator commands' HTTP client for --ca-file: it trusts
// only the certificates in that file (the server's CA, or its self-signed
// certificate). Nil for no --ca-file: the system's roots.
func caClient(caFile string) (*http.Client, error) {
	if caFile == "" {
		return nil, nil
	}
	pool, err := capool.Load(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	return pinnedClient(pool), nil
}

// pinnedClient is an HTTP client that trusts only pool, with the 30 s
// timeout server.Client uses by default.
func pinnedClient(pool *x509.CertPool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}
}

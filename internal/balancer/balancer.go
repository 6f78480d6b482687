// Package balancer runs haproxy in front of ringfence-server replicas: the
// load balancer of the replicas' tests and of ringfence-lab --replicas.
// One haproxy process, in the foreground (-db), round robin over the
// backends, each health-checked with HEAD /metrics (every 300 ms, out after
// 2 failures, back after 1 success); a request whose connection a backend
// refuses is retried on another (retries, option redispatch). It listens
// on a free loopback port and stops with Stop; on Linux it also gets
// SIGTERM if the process that started it dies.
//
// haproxy is Debian's package (apt-get install haproxy; 'make deps'
// installs it). There is none on Windows: the package builds there, and
// Find says so.
package balancer

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// HealthPath is what haproxy asks each backend for (HEAD), and what Start
// asks the balancer for (GET) until it answers 200. The checks use HEAD:
// haproxy reads a check's status and headers and closes the connection,
// and a GET of a long /metrics would have the backend log a broken pipe
// at every check (ringfence-server does, several lines a check).
const HealthPath = "/metrics"

// ConfigFile is haproxy's configuration, written into Start's dir.
const ConfigFile = "haproxy.cfg"

// Timing and bounds.
const (
	// startTimeout bounds Start when ctx has no earlier deadline.
	startTimeout = 20 * time.Second
	// poll is how often Start asks the balancer whether it answers.
	poll = 50 * time.Millisecond
	// bindTries bounds the ports tried when another process takes the
	// free port picked between its pick and haproxy's bind.
	bindTries = 5
	// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
	stopGrace = 5 * time.Second
	// tailSize bounds the haproxy output kept for error messages.
	tailSize = 8 << 10
	// maxBackends bounds the backends of one balancer.
	maxBackends = 64
)

// markHeader is set by haproxy on every response it passes, with a value
// of this balancer's own: Start knows that it reached its haproxy, not
// another process that took the port.
const markHeader = "X-Ringfence-Balancer"

// Balancer is a running haproxy.
type Balancer struct {
	url  string
	cmd  *exec.Cmd
	out  *tail
	done chan struct{} // closed once haproxy exited and was waited for
	err  error         // its exit, once done is closed

	stopOnce sync.Once
	stopErr  error
}

// Find returns the path of haproxy, or an error that says how to install it.
func Find() (string, error) {
	p, err := exec.LookPath("haproxy")
	if err != nil {
		return "", fmt.Errorf("haproxy is not installed (%w): the replicas' load balancer; 'make deps' installs it (apt-get install haproxy)", err)
	}
	return p, nil
}

// Start writes a configuration into dir (created if need be), runs bin
// (haproxy; see Find) on a free loopback port in front of backends
// (http://host:port each), and returns once the balancer answers GET
// HealthPath with 200 through a backend, within ctx's deadline or 20 s.
// haproxy's output goes to logTo (may be nil) as well; if it exits before
// it answers, the error carries the end of that output. A port another
// process took meanwhile is replaced by another, a few times. ctx bounds
// the start only: the balancer runs until Stop.
func Start(ctx context.Context, bin string, backends []string, dir string, logTo io.Writer) (*Balancer, error) {
	if len(backends) == 0 || len(backends) > maxBackends {
		return nil, fmt.Errorf("balancer: %d backends: want 1 to %d", len(backends), maxBackends)
	}
	addrs := make([]string, len(backends))
	for i, b := range backends {
		u, err := url.Parse(b)
		if err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, fmt.Errorf("balancer: backend %q: want http://HOST:PORT", b)
		}
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
			return nil, fmt.Errorf("balancer: backend %q: want http://HOST:PORT", b)
		}
		addrs[i] = u.Host
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("balancer: %w", err)
	}
	if logTo == nil {
		logTo = io.Discard
	}
	if _, has := ctx.Deadline(); !has {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	var last error
	for range bindTries {
		b, retry, err := start(ctx, bin, addrs, dir, logTo)
		if err == nil {
			return b, nil
		}
		if !retry {
			return nil, err
		}
		last = err
	}
	return nil, fmt.Errorf("balancer: no free port after %d tries: %w", bindTries, last)
}

// start is one try of Start on one port; retry says the port was taken.
func start(ctx context.Context, bin string, addrs []string, dir string, logTo io.Writer) (b *Balancer, retry bool, err error) {
	addr, err := pickPort()
	if err != nil {
		return nil, false, fmt.Errorf("balancer: pick a port: %w", err)
	}
	mark, err := nonce()
	if err != nil {
		return nil, false, err
	}
	path := filepath.Join(dir, ConfigFile)
	if err := os.WriteFile(path, []byte(Config(addr, addrs, mark)), 0o600); err != nil {
		return nil, false, fmt.Errorf("balancer: %w", err)
	}
	out := &tail{}
	w := io.MultiWriter(out, &safeWriter{w: logTo})
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = w, w
	procAttr(cmd)
	if err := cmd.Start(); err != nil {
		return nil, false, fmt.Errorf("balancer: start %s: %w", bin, err)
	}
	b = &Balancer{url: "http://" + addr, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		b.err = cmd.Wait()
		close(b.done)
	}()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	t := time.NewTicker(poll)
	defer t.Stop()
	var last error
	for {
		if last = b.ready(ctx, client, mark); last == nil {
			return b, false, nil
		}
		select {
		case <-b.done:
			msg := strings.TrimSpace(out.String())
			err := fmt.Errorf("balancer: haproxy exited (%v) on %s: %s", b.err, addr, msg)
			return nil, bindFailed(msg), err
		case <-ctx.Done():
			_ = b.Stop()
			return nil, false, fmt.Errorf("balancer: haproxy on %s did not answer GET %s with 200 in time (last: %v); its output: %s",
				addr, HealthPath, last, strings.TrimSpace(out.String()))
		case <-t.C:
		}
	}
}

// ready asks the balancer for HealthPath once: nil when its haproxy
// passed a 200.
func (b *Balancer) ready(ctx context.Context, c *http.Client, mark string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url+HealthPath, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.Header.Get(markHeader) != mark {
		return fmt.Errorf("%s answers, but not as this balancer (another process on the port?)", b.url)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s through the balancer: %s", HealthPath, resp.Status)
	}
	return nil
}

// bindFailed reports whether haproxy's output says it could not bind its
// port.
func bindFailed(out string) bool {
	return strings.Contains(out, "cannot bind socket") || strings.Contains(out, "Address already in use")
}

// Config is haproxy's configuration: listen on addr, round robin over the
// backends (HOST:PORT), each checked with HEAD HealthPath, and mark as the
// value of markHeader on every response.
func Config(addr string, backends []string, mark string) string {
	var c strings.Builder
	c.WriteString(`# written by ringfence's internal/balancer
global
  maxconn 2048
  # Never share the port with another process's socket.
  noreuseport

defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 15s
  timeout http-request 15s
  timeout http-keep-alive 10s
  timeout queue 10s
  timeout check 1s
  retries 2
  option redispatch

frontend fe
`)
	fmt.Fprintf(&c, "  bind %s\n", addr)
	fmt.Fprintf(&c, "  http-response set-header %s %s\n", markHeader, mark)
	c.WriteString(`  default_backend replicas

backend replicas
  balance roundrobin
`)
	fmt.Fprintf(&c, "  option httpchk HEAD %s\n", HealthPath)
	for i, a := range backends {
		fmt.Fprintf(&c, "  server r%d %s check inter 300ms fall 2 rise 1\n", i+1, a)
	}
	return c.String()
}

// pickPort is freePort (a test takes a port first).
var pickPort = freePort

// freePort returns a loopback address whose port was free a moment ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

func nonce() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("balancer: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// URL is the balancer's: http://127.0.0.1:PORT.
func (b *Balancer) URL() string { return b.url }

// Done is closed once haproxy has exited.
func (b *Balancer) Done() <-chan struct{} { return b.done }

// Output is the end of haproxy's output (the last few kilobytes).
func (b *Balancer) Output() string { return b.out.String() }

// Stop stops haproxy (SIGTERM, SIGKILL after 5 s; killed where there are
// no signals) and waits for it. It returns an error when haproxy had
// exited by itself before. Calling it again returns the same.
func (b *Balancer) Stop() error {
	b.stopOnce.Do(func() {
		select {
		case <-b.done:
			b.stopErr = fmt.Errorf("balancer: haproxy had exited by itself (%v): %s", b.err, strings.TrimSpace(b.out.String()))
			return
		default:
		}
		if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			_ = b.cmd.Process.Kill()
		}
		select {
		case <-b.done:
		case <-time.After(stopGrace):
			_ = b.cmd.Process.Kill()
			<-b.done
		}
	})
	return b.stopErr
}

// tail keeps the last tailSize bytes written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailSize:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.ToValidUTF8(t.buf, nil))
}

// safeWriter ignores its writer's errors: a log that fails must not stop
// haproxy's output from being read (exec would stop copying).
type safeWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *safeWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = s.w.Write(p)
	return len(p), nil
}

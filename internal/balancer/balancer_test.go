package balancer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/await"
	"github.com/ringfence/ringfence/internal/syncbuf"
	"github.com/stretchr/testify/require"
)

// haproxy returns haproxy's path, or skips the test.
func haproxy(t *testing.T) string {
	t.Helper()
	bin, err := Find()
	if err != nil {
		t.Skipf("SKIPPED: %v", err)
	}
	return bin
}

// backend is a tiny server that answers every request with its name.
func backend(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, name)
	}))
	t.Cleanup(s.Close)
	return s
}

// get asks the balancer for path on a new connection (so that round
// robin, which is per request, is seen per request whatever the reuse).
func get(t *testing.T, url string) (string, error) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url + "/v1/anything")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	return string(b), nil
}

// TestRoundRobinAndFailover: requests through the balancer reach both
// backends in turn; once one stops, it is taken out and every request
// still succeeds, on the other.
func TestRoundRobinAndFailover(t *testing.T) {
	bin := haproxy(t)
	a, b := backend(t, "a"), backend(t, "b")
	var logs syncbuf.Buffer
	lb, err := Start(context.Background(), bin, []string{a.URL, b.URL}, t.TempDir(), &logs)
	require.NoError(t, err)
	t.Cleanup(func() { _ = lb.Stop() })
	require.True(t, strings.HasPrefix(lb.URL(), "http://127.0.0.1:"), lb.URL())

	seen := map[string]int{}
	for range 10 {
		name, err := get(t, lb.URL())
		require.NoError(t, err)
		seen[name]++
	}
	require.Equal(t, map[string]int{"a": 5, "b": 5}, seen, "round robin")

	// b stops: a request that hits it before its checks take it out is
	// redispatched to a; every request succeeds, all on a.
	b.Close()
	for range 20 {
		name, err := get(t, lb.URL())
		require.NoError(t, err, "haproxy: %s", logs.String())
		require.Equal(t, "a", name)
	}
	// The health checks take it out (2 failures, 300 ms apart).
	await.Until(t, 10*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(logs.String(), "r2 is DOWN") {
			return errors.New(`no "r2 is DOWN" in its log`)
		}
		return nil
	}, "haproxy does not mark the stopped backend down: %s", &logs)
	require.NoError(t, lb.Stop())
	select {
	case <-lb.Done():
	default:
		t.Fatal("Stop returned before haproxy exited")
	}
	require.NoError(t, lb.Stop(), "Stop again")
}

// TestStartFails: a haproxy that exits at once fails Start with its
// output; bad backends are refused before anything runs.
func TestStartFails(t *testing.T) {
	bin := haproxy(t)
	a := backend(t, "a")
	_, err := Start(context.Background(), bin, nil, t.TempDir(), nil)
	require.ErrorContains(t, err, "0 backends")
	_, err = Start(context.Background(), bin, []string{"127.0.0.1:80"}, t.TempDir(), nil)
	require.ErrorContains(t, err, "want http://HOST:PORT")
	_, err = Start(context.Background(), "/bin/false", []string{a.URL}, t.TempDir(), nil)
	require.ErrorContains(t, err, "haproxy exited")

	// No backend answers: Start gives up at ctx's deadline, haproxy stopped.
	down := backend(t, "down")
	down.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = Start(ctx, bin, []string{down.URL}, t.TempDir(), nil)
	require.ErrorContains(t, err, "did not answer")
}

// TestBindRetry: a port taken between the pick and haproxy's bind is
// replaced by another.
func TestBindRetry(t *testing.T) {
	bin := haproxy(t)
	a := backend(t, "a")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	picks := 0
	pickPort = func() (string, error) {
		picks++
		if picks == 1 {
			return taken.Addr().String(), nil
		}
		return freePort()
	}
	defer func() { pickPort = freePort }()
	var logs syncbuf.Buffer
	lb, err := Start(context.Background(), bin, []string{a.URL}, t.TempDir(), &logs)
	require.NoError(t, err)
	defer lb.Stop()
	require.Equal(t, 2, picks)
	require.NotEqual(t, "http://"+taken.Addr().String(), lb.URL())
	require.Contains(t, logs.String(), "cannot bind socket")
	name, err := get(t, lb.URL())
	require.NoError(t, err)
	require.Equal(t, "a", name)

	require.True(t, bindFailed("[ALERT]    (1) : Starting frontend fe: cannot bind socket (Address already in use) [127.0.0.1:4000]"))
	require.False(t, bindFailed("[ALERT]    (1) : config : parsing [haproxy.cfg:3] : unknown keyword"))
}

// TestConfig: the configuration haproxy is given.
func TestConfig(t *testing.T) {
	c := Config("127.0.0.1:4000", []string{"127.0.0.1:1", "127.0.0.1:2"}, "m")
	for _, want := range []string{"mode http", "bind 127.0.0.1:4000", "balance roundrobin", "option httpchk HEAD /metrics",
		"server r1 127.0.0.1:1 check inter 300ms fall 2 rise 1", "server r2 127.0.0.1:2 check", "retries 2", "option redispatch",
		"noreuseport", "http-response set-header " + markHeader + " m"} {
		require.Contains(t, c, want)
	}
}

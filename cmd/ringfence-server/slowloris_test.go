package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/testtmp"
)

// fdCounter counts a process's open descriptors; nil where /proc does not
// list them (not Linux).
func fdCounter(pid int) func() int {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	if _, err := os.ReadDir(dir); err != nil {
		return nil
	}
	return func() int {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return -1 // the process is gone
		}
		return len(ents)
	}
}

// TestSlowBodies: clients that send a telemetry header and then a byte
// every 500 ms neither exhaust the server's descriptors nor keep ordinary
// requests out. The cap keeps at most --max-conns connections open (the
// rest wait in the kernel's accept queue, holding none of the server's
// descriptors); --read-timeout frees each slot a slow body holds.
//
// A new connection waits behind the slow ones queued before it: they drain
// --max-conns at a time, each slot held for the read timeout plus the half
// second net/http waits before closing a connection whose body it did not
// read (its rstAvoidanceDelay). A GET that arrives behind all of them is
// served after slow/cap such rounds, not after one read timeout; the bound
// adds a margin for a loaded test machine. The deadlines are real network
// deadlines.
func TestSlowBodies(t *testing.T) {
	if testing.Short() {
		t.Skip("holds 200 slow connections for several seconds")
	}
	const (
		maxConns    = 64
		readTimeout = 2 * time.Second
		slow        = 200
		headroom    = 16 // descriptors the server opens besides connections while serving
		closeDelay  = 500 * time.Millisecond
		margin      = 4 * time.Second
	)
	bound := time.Duration(slow/maxConns)*(readTimeout+closeDelay) + margin

	repo, keys := newRepo(t)
	srv := startServe(t, repo, keys, testtmp.Dir(t),
		"--max-conns", strconv.Itoa(maxConns), "--read-timeout", readTimeout.String())
	addr := srv.url[len("http://"):]
	get := func() (time.Duration, error) {
		start := time.Now()
		c := &http.Client{Timeout: bound, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get(srv.url + "/metadata/timestamp.json")
		if err != nil {
			return time.Since(start), err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return time.Since(start), err
		}
		if resp.StatusCode != http.StatusOK {
			return time.Since(start), fmt.Errorf("GET timestamp.json: %s", resp.Status)
		}
		return time.Since(start), nil
	}
	_, err := get()
	require.NoError(t, err, "logs: %s", srv.logs.String())

	// Watch the server's descriptors for the whole attack.
	count := fdCounter(srv.cmd.Process.Pid)
	var base int
	peak := make(chan int, 1)
	stopWatch := make(chan struct{})
	if count != nil {
		base = count()
		go func() {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			most := 0
			for {
				select {
				case <-stopWatch:
					peak <- most
					return
				case <-tick.C:
					most = max(most, count())
				}
			}
		}()
	}

	// The slow clients: each sends a telemetry header announcing a large
	// batch, then one byte of it every 500 ms (a ticker paces them), until
	// the server hangs up.
	var conns []net.Conn
	for range slow {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		_, err = fmt.Fprintf(c, "POST /v1/telemetry HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{", addr)
		require.NoError(t, err)
		conns = append(conns, c)
	}
	stopSlow := make(chan struct{})
	var slowDone sync.WaitGroup
	slowDone.Go(func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSlow:
				return
			case <-tick.C:
				open := conns[:0]
				for _, c := range conns {
					_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
					if _, err := c.Write([]byte(" ")); err != nil {
						_ = c.Close()
						continue
					}
					open = append(open, c)
				}
				conns = open
			}
		}
	})

	// Ordinary requests while all of them are open or queued: one behind
	// every slow connection, and a few more that arrive while the queue
	// drains.
	type result struct {
		took time.Duration
		err  error
	}
	const gets = 4
	results := make(chan result, gets)
	send := func() {
		took, err := get()
		results <- result{took, err}
	}
	go send()
	go func() { // the others arrive one a second, paced by a ticker
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for range gets - 1 {
			<-tick.C
			go send()
		}
	}()
	for range gets {
		r := <-results
		require.NoError(t, r.err, "a GET behind %d slow connections (cap %d, read timeout %v) took %v; logs: %s", slow, maxConns, readTimeout, r.took, srv.logs.String())
		t.Logf("GET timestamp.json during the attack: %v (bound %v)", r.took, bound)
	}
	close(stopSlow)
	slowDone.Wait()

	if count != nil {
		close(stopWatch)
		p := <-peak
		t.Logf("server descriptors: %d before the attack, %d at most during it (cap %d)", base, p, maxConns)
		require.LessOrEqual(t, p, base+maxConns+headroom, "the server opened more descriptors than --max-conns allows")
		require.GreaterOrEqual(t, p, base+maxConns*3/4, "the slow clients did not fill the cap: the test proves nothing")
	}
	_, err = get()
	require.NoError(t, err, "the server answers after the attack")
}

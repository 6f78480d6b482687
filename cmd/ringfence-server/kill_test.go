package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/wire"
)

// TestAcknowledgedSurvivesKill: a batch the server acknowledged (200) is
// committed: six times, hosts post batches while the server is killed with
// SIGKILL at an arbitrary moment, and after each restart every host's last
// applied seq is at least the highest one it was acknowledged.
func TestAcknowledgedSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a real server six times")
	}
	repo, keys, state := testtmp.Dir(t), testtmp.Dir(t), testtmp.Dir(t)
	_, errOut, code := runCLI(t, "repo", "init", "--repo", repo, "--keys", keys)
	require.Equal(t, 0, code, errOut)
	type host struct {
		key   ed25519.PrivateKey
		id    string
		seq   uint64
		acked uint64
	}
	var hosts []*host
	for range 8 {
		_, k, err := ed25519.GenerateKey(nil)
		require.NoError(t, err)
		h := &host{key: k, id: wire.HostIDOf(k.Public().(ed25519.PublicKey))}
		hosts = append(hosts, h)
		_, errOut, code := runCLI(t, "hosts", "accept", h.id, "--state", state, "--repo", repo, "--keys", keys, "--why", "fleet")
		require.Equal(t, 0, code, errOut)
	}
	post := func(url string, h *host) (int, error) {
		h.seq++
		b := wire.Batch{Format: wire.Format, HostID: h.id, PublicKey: base64.StdEncoding.EncodeToString(h.key.Public().(ed25519.PublicKey)),
			SentAt: time.Now().UTC(), HostInfo: wire.HostInfo{Versions: map[string]uint32{"291": 1001}},
			Events: []wire.Event{{ID: fmt.Sprintf("e%d", h.seq), Seq: h.seq, Kind: wire.EventHeartbeat, Channel: 291, Version: 1001}}}
		body, err := json.Marshal(b)
		if err != nil {
			return 0, err
		}
		req, err := http.NewRequest(http.MethodPost, url+wire.Path, bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set(wire.SignatureHeader, wire.SignatureValue(ed25519.Sign(h.key, body)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	for round := range 6 {
		p := startServe(t, repo, keys, state, "--host-rate", "100000")
		var wg sync.WaitGroup
		stop := make(chan struct{})
		var mu sync.Mutex
		acks := 0
		// Kill it after a number of acknowledgements that differs each
		// round, while every host is mid-request.
		target, reached := 40+round*37, make(chan struct{})
		for _, h := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					code, err := post(p.url, h)
					if err != nil {
						return // the server is gone
					}
					if code == http.StatusOK {
						mu.Lock()
						h.acked = h.seq
						if acks++; acks == target {
							close(reached)
						}
						mu.Unlock()
					}
				}
			}()
		}
		<-reached
		require.NoError(t, p.cmd.Process.Kill())
		_, _ = p.cmd.Process.Wait()
		close(stop)
		wg.Wait()

		q := startServe(t, repo, keys, state, "--host-rate", "100000")
		tok, err := server.LoadOrCreateToken(state)
		require.NoError(t, err)
		c := &server.Client{URL: q.url, Token: tok}
		for _, h := range hosts {
			v, err := c.Host(context.Background(), h.id)
			require.NoError(t, err)
			require.GreaterOrEqual(t, v.LastSeq, h.acked, "round %d: host %s was acknowledged seq %d, the server kept %d", round, h.id, h.acked, v.LastSeq)
		}
		require.NoError(t, q.cmd.Process.Kill())
		_, _ = q.cmd.Process.Wait()
	}
}

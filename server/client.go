package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/internal/boundedio"
)

// Limits of what the client reads.
const (
	// maxResponse bounds an API answer.
	maxResponse = 32 << 20
	// maxAddrFile bounds serve.url: one URL.
	maxAddrFile = 4 << 10
)

// Client talks to a running server's API (the operator commands, the lab).
type Client struct {
	URL   string
	Token string
	HTTP  *http.Client
}

// ClientFor finds the server that runs on a state directory: its URL in
// serve.url and its token in operator.token.
func ClientFor(state string) (*Client, error) {
	u, err := boundedio.ReadFile(filepath.Join(state, AddrFile), maxAddrFile)
	if err != nil {
		return nil, fmt.Errorf("server: no running server recorded in %s (%v); give --server URL", state, err)
	}
	tok, err := LoadOrCreateToken(state)
	if err != nil {
		return nil, err
	}
	return &Client{URL: strings.TrimSpace(string(u)), Token: tok}, nil
}

// maxNoLeaderWait bounds how long a request waits out answers that no
// replica leads (503 with a Retry-After: a takeover in progress).
const maxNoLeaderWait = 20 * time.Second

// do sends one request. An answer that no replica leads at the moment
// (503 with Retry-After: nothing was done) is retried as it says, for
// maxNoLeaderWait at most.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var raw []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		raw = b
	}
	deadline := time.Now().Add(maxNoLeaderWait)
	for {
		wait, err := c.once(ctx, method, path, raw, out)
		if wait <= 0 || time.Now().Add(wait).After(deadline) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// once sends the request once; on a 503 with a Retry-After it also
// returns the wait asked for.
func (c *Client) once(ctx context.Context, method, path string, body []byte, out any) (time.Duration, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.URL, "/")+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("server: %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	raw, err := boundedio.ReadAll(resp.Body, maxResponse)
	if err != nil {
		return 0, fmt.Errorf("server: read the answer from %s: %w", c.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		var wait time.Duration
		if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 0 && n <= 60 && resp.StatusCode == http.StatusServiceUnavailable {
			wait = time.Duration(n) * time.Second
		}
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return wait, &APIError{Code: resp.StatusCode, Msg: e.Error}
		}
		return wait, &APIError{Code: resp.StatusCode, Msg: strings.TrimSpace(string(raw))}
	}
	return 0, json.Unmarshal(raw, out)
}

// APIError is an error answer from the server.
type APIError struct {
	Code int
	Msg  string
}

func (e *APIError) Error() string { return e.Msg }

// Rollouts returns every rollout.
func (c *Client) Rollouts(ctx context.Context) ([]View, error) {
	var out struct {
		Rollouts []View `json:"rollouts"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/rollouts", nil, &out)
	return out.Rollouts, err
}

// Start begins a rollout.
func (c *Client) Start(ctx context.Context, q StartRequest) (controller.Decision, View, error) {
	var out decisionResponse
	err := c.do(ctx, http.MethodPost, "/v1/rollouts", q, &out)
	return out.Decision, out.Rollout, err
}

// Act applies an operator action.
func (c *Client) Act(ctx context.Context, channel uint32, action controller.Kind, who, why string) (controller.Decision, View, error) {
	var out decisionResponse
	err := c.do(ctx, http.MethodPost, fmt.Sprintf("/v1/rollouts/%d/%s", channel, action), ActionRequest{Who: who, Why: why}, &out)
	return out.Decision, out.Rollout, err
}

// Limits of Backup.
const (
	// maxBackup bounds the state backup Backup reads: server.db of
	// DefaultMaxHosts hosts is a few GiB.
	maxBackup = 64 << 30
	// backupTimeout bounds a whole Backup when c.HTTP is nil (the API's
	// other calls get 30 s).
	backupTimeout = time.Hour
)

// Backup streams a consistent copy of the server's state (server.db, from
// one read transaction) into w and returns its size. Write it with
// fleetdb.SaveBackup, which checks it before it keeps it.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.URL, "/")+"/v1/state/backup", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: backupTimeout}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("server: %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Only the error message is wanted: a truncated one still says
		// what went wrong.
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return 0, &APIError{Code: resp.StatusCode, Msg: e.Error}
		}
		return 0, &APIError{Code: resp.StatusCode, Msg: strings.TrimSpace(string(raw))}
	}
	n, err := io.Copy(w, io.LimitReader(resp.Body, maxBackup+1))
	if err != nil {
		return n, fmt.Errorf("server: state backup from %s broke off after %d bytes: %w", c.URL, n, err)
	}
	if n > maxBackup {
		return n, fmt.Errorf("server: state backup from %s is larger than %d bytes; refused", c.URL, int64(maxBackup))
	}
	return n, nil
}

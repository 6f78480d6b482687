package tuf

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/ringfence/ringfence/internal/boundedio"
)

// retry runs op up to 1+Retries times while it fails with a retryable error
// (network, 5xx, 429).
func (c *Client) retry(ctx context.Context, op func() error) error {
	var err error
	for attempt := 0; ; attempt++ {
		err = op()
		if err == nil || !retryable(err) || attempt >= c.opts.Retries {
			return err
		}
		backoff := c.opts.RetryBase << attempt
		wait := time.Duration(rand.Int64N(int64(backoff) + 1))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %v (after %v)", ErrNetwork, ctx.Err(), err)
		case <-t.C:
		}
	}
}

func retryable(err error) bool {
	var h *metadata.ErrDownloadHTTP
	if errors.As(err, &h) {
		return h.StatusCode >= 500 || h.StatusCode == http.StatusTooManyRequests
	}
	return errors.Is(err, ErrNetwork)
}

// get fetches url, reading at most limit bytes.
func (c *Client) get(ctx context.Context, url string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNetwork, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: resp.StatusCode, URL: url}
	}
	if resp.ContentLength > limit {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: %d bytes announced, at most %d allowed", url, resp.ContentLength, limit)}
	}
	data, err := boundedio.ReadAll(resp.Body, limit)
	if errors.Is(err, boundedio.ErrTooLarge) {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: more than %d bytes", url, limit)}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNetwork, err)
	}
	return data, nil
}

// fetchMetadata fetches file name (root.json, 3.snapshot.json, ...) from the
// repository's metadata URL, reading at most limit bytes, with retries.
func (c *Client) fetchMetadata(ctx context.Context, name string, limit int64) ([]byte, error) {
	// name is already escaped (a delegated role's name through
	// url.PathEscape): join it as text, as go-tuf does, not as a path.
	u := strings.TrimSuffix(c.opts.MetadataURL, "/") + "/" + name
	var data []byte
	err := c.retry(ctx, func() error {
		var err error
		data, err = c.get(ctx, u, limit)
		return err
	})
	return data, err
}

// isHTTPNotFound reports a 404 or 403, which ends the walk of root versions
// (5.3.3).
func isHTTPNotFound(err error) bool {
	var h *metadata.ErrDownloadHTTP
	return errors.As(err, &h) && (h.StatusCode == http.StatusNotFound || h.StatusCode == http.StatusForbidden)
}

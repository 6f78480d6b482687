package tuf

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/failpoint"
)

// FailpointDownloadPartial is hit after a download wrote some bytes into its
// partial file, before it finished.
const FailpointDownloadPartial = "tuf/download/partial"

// Download fetches target name into DownloadDir and returns the path of the
// verified file. The bytes stream into <name>.part; an interrupted download
// resumes from there with an HTTP Range request. Only when the whole file
// has the signed length and SHA-256 is it renamed (durably) to its final
// name; nothing else ever sees an unverified byte. A partial file that turns
// out wrong is deleted and the download starts over once.
func (c *Client) Download(ctx context.Context, name string) (string, error) {
	tf, err := c.Target(name)
	if err != nil {
		return "", err
	}
	want := tf.Hashes["sha256"]
	if len(want) != sha256.Size {
		return "", fmt.Errorf("%w: target %s has no sha256 in its metadata", ErrInvalid, name)
	}
	if tf.Length > c.opts.MaxTargetSize {
		return "", fmt.Errorf("%w: target %s is %d bytes; the limit is %d", ErrTooLarge, name, tf.Length, c.opts.MaxTargetSize)
	}
	base := url.PathEscape(name)
	final := filepath.Join(c.opts.DownloadDir, base)
	part := final + ".part"
	if ok, _ := verifyFile(final, tf.Length, want); ok {
		return final, nil
	}
	dir, file := path.Split(name)
	c.mu.Lock()
	if c.consistentSnapshot() {
		file = hex.EncodeToString(want) + "." + file
	}
	c.mu.Unlock()
	src, err := url.JoinPath(c.opts.TargetsURL, dir, file)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for attempt := 0; attempt < 2; attempt++ {
		err = c.retry(ctx, func() error { return c.fetchInto(ctx, src, part, tf.Length) })
		if err != nil {
			return "", mapError(err)
		}
		ok, verr := verifyFile(part, tf.Length, want)
		if verr != nil {
			return "", fmt.Errorf("%w: %v", ErrNetwork, verr)
		}
		if ok {
			if err := atomicfile.Rename(part, final); err != nil {
				return "", fmt.Errorf("tuf: %w", err)
			}
			return final, nil
		}
		// A wrong partial (a mirror changed it, or it was resumed from
		// bytes of another file): throw it away and start over once.
		if err := os.Remove(part); err != nil {
			return "", fmt.Errorf("tuf: %w", err)
		}
	}
	return "", fmt.Errorf("%w: target %s from %s does not match its signed length and sha256", ErrMismatch, name, src)
}

// fetchInto appends to part the bytes from its current size up to length,
// with a Range request when it already holds some.
func (c *Client) fetchInto(ctx context.Context, src, part string, length int64) error {
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if have > length {
		if err := f.Truncate(0); err != nil {
			return err
		}
		have, _ = f.Seek(0, io.SeekStart)
	}
	if have == length {
		return f.Sync()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return err
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	resp, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNetwork, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		if !strings.HasPrefix(resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", have)) {
			return fmt.Errorf("%w: %s: server resumed at %q, not byte %d", ErrNetwork, src, resp.Header.Get("Content-Range"), have)
		}
	case resp.StatusCode == http.StatusOK:
		// No range support (or nothing to resume): start from zero.
		if err := f.Truncate(0); err != nil {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		have = 0
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		_ = f.Truncate(0)
		return fmt.Errorf("%w: %s: range not satisfiable; restarting", ErrNetwork, src)
	default:
		return httpError(resp.StatusCode, src)
	}
	// Never more than the signed length: endless data stops here.
	n, err := io.Copy(f, io.LimitReader(resp.Body, length-have+1))
	failpoint.Hit(FailpointDownloadPartial)
	if err != nil {
		_ = f.Sync()
		return fmt.Errorf("%w: %v", ErrNetwork, err)
	}
	if have+n > length {
		_ = f.Truncate(0)
		return fmt.Errorf("%w: %s sends more than the signed %d bytes", ErrTooLarge, src, length)
	}
	return f.Sync()
}

func httpError(code int, src string) error {
	switch {
	case code == http.StatusNotFound || code == http.StatusForbidden:
		return fmt.Errorf("%w: %s: HTTP %d", ErrNotFound, src, code)
	case code >= 500 || code == http.StatusTooManyRequests:
		return fmt.Errorf("%w: %s: HTTP %d", ErrNetwork, src, code)
	}
	return fmt.Errorf("%w: %s: HTTP %d", ErrInvalid, src, code)
}

// verifyFile reports whether path has exactly length bytes with SHA-256 want.
func verifyFile(path string, length int64, want []byte) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, length+1))
	if err != nil {
		return false, err
	}
	return n == length && hex.EncodeToString(h.Sum(nil)) == hex.EncodeToString(want), nil
}

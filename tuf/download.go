package tuf

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/failpoint"
)

// FailpointDownloadPartial is hit after a download wrote some bytes into its
// partial file, before it finished.
const FailpointDownloadPartial = "tuf/download/partial"

// Download fetches target name into DownloadDir and returns the path of the
// verified file. The bytes stream into <name>.part in PartialDir; an
// interrupted download resumes from there with an HTTP Range request. Only
// when the whole file has the signed length and every signed hash this
// client knows (sha256, sha384, sha512) is it renamed (durably) to its final
// name: no unverified byte is ever under a final name. A partial file that
// turns out wrong is deleted and the download starts over once; a download
// that fails before any byte arrived leaves no partial file behind.
func (c *Client) Download(ctx context.Context, name string) (string, error) {
	tf, err := c.Target(ctx, name)
	if err != nil {
		return "", err
	}
	sums, err := knownHashes(name, tf.Hashes)
	if err != nil {
		return "", err
	}
	if tf.Length > c.opts.MaxTargetSize {
		return "", fmt.Errorf("%w: target %s is %d bytes; the limit is %d", ErrTooLarge, name, tf.Length, c.opts.MaxTargetSize)
	}
	for _, d := range []string{c.opts.DownloadDir, c.opts.PartialDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", fmt.Errorf("tuf: %w", err)
		}
	}
	base := url.PathEscape(name)
	final := filepath.Join(c.opts.DownloadDir, base)
	part := filepath.Join(c.opts.PartialDir, base+".part")
	if ok, _ := verifyFile(final, tf.Length, sums); ok {
		return final, nil
	}
	dir, file := path.Split(name)
	c.mu.Lock()
	if c.consistentSnapshot() {
		file = hex.EncodeToString(sums[0].want) + "." + file
	}
	c.mu.Unlock()
	src, err := url.JoinPath(c.opts.TargetsURL, dir, file)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for attempt := 0; attempt < 2; attempt++ {
		err = c.retry(ctx, func() error { return c.fetchInto(ctx, src, part, tf.Length) })
		if err != nil {
			dropEmpty(part)
			return "", mapError(err)
		}
		ok, verr := verifyFile(part, tf.Length, sums)
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
	return "", fmt.Errorf("%w: target %s from %s does not match its signed length and hashes", ErrMismatch, name, src)
}

// dropEmpty removes a partial file that holds nothing worth resuming.
func dropEmpty(part string) {
	if fi, err := os.Stat(part); err == nil && fi.Size() == 0 {
		_ = os.Remove(part)
	}
}

// signedHash is one hash of a target's signed metadata this client can
// check.
type signedHash struct {
	alg  string
	want []byte
	new  func() hash.Hash
}

// hashAlgs are the algorithms Download verifies, in the order it prefers
// one to name a consistent-snapshot target file.
var hashAlgs = []struct {
	name string
	new  func() hash.Hash
	size int
}{{"sha256", sha256.New, sha256.Size}, {"sha512", sha512.New, sha512.Size}, {"sha384", sha512.New384, sha512.Size384}}

// knownHashes returns the target's signed hashes this client knows, every
// one of which the file must match. Algorithms it does not know are
// skipped; a target with none it knows is refused.
func knownHashes(name string, hashes metadata.Hashes) ([]signedHash, error) {
	var out []signedHash
	for _, a := range hashAlgs {
		want, ok := hashes[a.name]
		if !ok {
			continue
		}
		if len(want) != a.size {
			return nil, fmt.Errorf("%w: target %s has a %d-byte %s; want %d bytes", ErrInvalid, name, len(want), a.name, a.size)
		}
		out = append(out, signedHash{a.name, want, a.new})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: target %s lists no hash this client verifies (sha256, sha384, sha512)", ErrInvalid, name)
	}
	return out, nil
}

// fetchInto appends to part the bytes from its current size up to length,
// with a Range request when it already holds some.
func (c *Client) fetchInto(ctx context.Context, src, part string, length int64) error {
	have := int64(0)
	if fi, err := os.Stat(part); err == nil {
		have = fi.Size()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if have > length {
		if err := os.Remove(part); err != nil {
			return err
		}
		have = 0
	}
	if have == length && have > 0 {
		return nil
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
		have = 0 // no range support (or nothing to resume): start from zero
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		_ = os.Remove(part)
		return fmt.Errorf("%w: %s: range not satisfiable; restarting", ErrNetwork, src)
	default:
		return httpError(resp.StatusCode, src)
	}
	// The partial file is created only now that the repository answered
	// with bytes, so a 404 leaves nothing behind.
	flags := os.O_WRONLY | os.O_CREATE
	if have == 0 {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(part, flags, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return err
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

// verifyFile reports whether path has exactly length bytes and every hash
// in sums, read in one pass.
func verifyFile(path string, length int64, sums []signedHash) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	hs := make([]hash.Hash, len(sums))
	ws := make([]io.Writer, len(sums))
	for i, s := range sums {
		hs[i] = s.new()
		ws[i] = hs[i]
	}
	n, err := io.Copy(io.MultiWriter(ws...), io.LimitReader(f, length+1))
	if err != nil {
		return false, err
	}
	if n != length {
		return false, nil
	}
	for i, s := range sums {
		if !bytes.Equal(hs[i].Sum(nil), s.want) {
			return false, nil
		}
	}
	return true, nil
}

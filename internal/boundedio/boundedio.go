// Package boundedio reads files and streams whole, never more than a named
// limit: the one helper behind every read of something that came from
// outside (metadata, manifests, keys, configurations, channel files, HTTP
// bodies).
package boundedio

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrTooLarge is returned by ReadFile and ReadAll for input over its limit.
var ErrTooLarge = errors.New("larger than the limit")

// ReadFile reads path whole if it holds at most limit bytes; a larger file
// is ErrTooLarge, and only limit+1 bytes of it are read.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := ReadAll(f, limit)
	switch {
	case errors.Is(err, ErrTooLarge):
		return nil, fmt.Errorf("%s is %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// ReadAll reads r to its end if it holds at most limit bytes; more is
// ErrTooLarge ("larger than the limit of N bytes"), and only limit+1 bytes
// of r are read. Unlike io.ReadAll over an io.LimitReader, it never returns
// a truncated read as if it were the whole.
func ReadAll(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w of %d bytes", ErrTooLarge, limit)
	}
	return b, nil
}

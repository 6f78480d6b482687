// Package boundedio reads files whole, never more than a named limit: the
// one helper behind every read of a file that came from outside (metadata,
// manifests, keys, configurations, channel files).
package boundedio

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrTooLarge is returned by ReadFile for a file over its limit.
var ErrTooLarge = errors.New("larger than the limit")

// ReadFile reads path whole if it holds at most limit bytes; a larger file
// is ErrTooLarge, and only limit+1 bytes of it are read.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is %w of %d bytes", path, ErrTooLarge, limit)
	}
	return b, nil
}

package tuf

import (
	"errors"
	"fmt"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Sentinel errors: every failure of Refresh and Download wraps exactly one of
// these, so the daemon, status and telemetry can say what went wrong.
var (
	// ErrExpired: metadata expired (per the client's clock): a frozen
	// mirror, or a host clock far ahead. Nothing newer is trusted.
	ErrExpired = errors.New("tuf: metadata expired")
	// ErrRollback: the repository offered metadata older than what this
	// host already trusts (a rollback or replay).
	ErrRollback = errors.New("tuf: rollback to older metadata refused")
	// ErrBadSignature: metadata not signed by a threshold of trusted keys.
	ErrBadSignature = errors.New("tuf: metadata signature verification failed")
	// ErrMismatch: a file's length or hash is not what signed metadata says
	// (mix-and-match, a malicious mirror).
	ErrMismatch = errors.New("tuf: length or hash does not match signed metadata")
	// ErrNotFound: no signed metadata names the target, or the server has no
	// such file.
	ErrNotFound = errors.New("tuf: not found")
	// ErrTooLarge: a download exceeded its bound (endless data).
	ErrTooLarge = errors.New("tuf: download larger than allowed")
	// ErrNetwork: the repository could not be reached after the retries.
	ErrNetwork = errors.New("tuf: repository unreachable")
	// ErrBadTarget: a target name that could escape the download directory
	// ("..", an absolute path, a backslash).
	ErrBadTarget = errors.New("tuf: unsafe target name")
	// ErrInvalid: malformed metadata, or anything else the TUF client
	// rejected.
	ErrInvalid = errors.New("tuf: invalid metadata")
)

// ErrNoTrustedRoot is returned by New when the host trusts no root yet:
// none is persisted under Options.Dir and Options.TrustedRoot is empty.
var ErrNoTrustedRoot = errors.New("tuf: no trusted root: install the repository's root.json with the agent")

// mapError wraps a go-tuf error in the matching sentinel, keeping the
// original text.
func mapError(err error) error {
	if err == nil {
		return nil
	}
	for _, s := range []error{ErrExpired, ErrRollback, ErrBadSignature, ErrMismatch, ErrNotFound, ErrTooLarge, ErrNetwork, ErrBadTarget, ErrInvalid} {
		if errors.Is(err, s) {
			return err
		}
	}
	var (
		httpErr  *metadata.ErrDownloadHTTP
		sentinel error
	)
	switch {
	case errors.Is(err, &metadata.ErrExpiredMetadata{}):
		sentinel = ErrExpired
	case errors.Is(err, &metadata.ErrBadVersionNumber{}), errors.Is(err, &metadata.ErrEqualVersionNumber{}):
		sentinel = ErrRollback
	case errors.Is(err, &metadata.ErrUnsignedMetadata{}):
		sentinel = ErrBadSignature
	case errors.Is(err, &metadata.ErrLengthOrHashMismatch{}):
		sentinel = ErrMismatch
	case errors.Is(err, &metadata.ErrDownloadLengthMismatch{}):
		sentinel = ErrTooLarge
	case errors.As(err, &httpErr) && (httpErr.StatusCode == 404 || httpErr.StatusCode == 403):
		sentinel = ErrNotFound
	case errors.As(err, &httpErr):
		sentinel = ErrNetwork
	default:
		sentinel = ErrInvalid
	}
	return fmt.Errorf("%w: %v", sentinel, err)
}

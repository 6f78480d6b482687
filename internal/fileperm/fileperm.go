package fileperm

import (
	"errors"
	"io/fs"
)

// ErrTooOpen is returned (wrapped) by CheckPrivate and CheckSecret when the
// mode of a file or directory lets users other than its owner write it (or,
// for a secret, read it).
var ErrTooOpen = errors.New("fileperm: permissions are too open")

// Masks of the mode bits each check refuses.
const (
	privateMask fs.FileMode = 0o022 // group and world write
	secretMask  fs.FileMode = 0o077 // any group or world access
)

// CheckPrivate returns an error wrapping ErrTooOpen when path (a file or a
// directory; symlinks are followed) is group- or world-writable. what names
// it in the error ("state directory", "boot record"), which also gives the
// chmod to run. A path that cannot be stat'ed returns the stat error
// (errors.Is(err, fs.ErrNotExist) when it is missing). On Windows it returns
// nil.
func CheckPrivate(path, what string) error { return check(path, what, privateMask) }

// CheckSecret is CheckPrivate for files that hold secrets (an operator
// token, a private key): it also refuses group- or world-readable modes,
// and any other access bit for group or world.
func CheckSecret(path, what string) error { return check(path, what, secretMask) }

package server

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/ringfence/ringfence/internal/fileperm"
)

// checkStateDir refuses a state directory that is group- or
// world-writable: whoever can write it can replace server.db (the fleet's
// rollouts and decisions) or operator.token (the key to every action). A
// directory that is not there yet passes; it is created 0700. The error
// names the chmod that fixes it.
func checkStateDir(dir string) error {
	err := fileperm.CheckPrivate(dir, "state directory")
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return fmt.Errorf("server: %w", err)
}

// checkToken refuses an operator token file that users other than its
// owner can read or write: it is the bearer token of every operator
// action.
func checkToken(path string) error {
	err := fileperm.CheckSecret(path, "operator token")
	if err == nil {
		return nil
	}
	if errors.Is(err, fileperm.ErrTooOpen) {
		return fmt.Errorf("server: %w; if someone may have read it, remove it instead and a new token is made", err)
	}
	return fmt.Errorf("server: %w", err)
}

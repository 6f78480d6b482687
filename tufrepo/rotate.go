package tufrepo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// RotateKeys replaces every key of role with a fresh one of type kt (the
// same number of keys), re-signs what the change touches, and overwrites the
// role's key files. Top-level roles change root (a new root version, signed
// by the old and the new root keys, so clients can walk the chain); content
// and rollout change targets' delegation.
func (r *Repo) RotateKeys(role string, kt KeyType) error {
	switch role {
	case RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp, RoleContent, RoleRollout:
	default:
		return fmt.Errorf("tufrepo: unknown role %q; the roles are %s, %s, %s, %s, %s and %s", role, RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp, RoleContent, RoleRollout)
	}
	old, err := r.signers(role)
	if err != nil {
		return err
	}
	var fresh []*privateKey
	for range old {
		k, err := freshKey(r.keys, role, kt)
		if err != nil {
			return err
		}
		fresh = append(fresh, k)
	}
	if role == RoleContent || role == RoleRollout {
		// The new keys are on disk before any metadata trusts them, and
		// the old ones go only after the metadata that stops trusting them
		// is written: a crash anywhere leaves every key the metadata needs.
		if err := r.saveKeys(fresh); err != nil {
			return err
		}
		d := r.targets.Signed.Delegations
		for i := range d.Roles {
			if d.Roles[i].Name != role {
				continue
			}
			for _, id := range d.Roles[i].KeyIDs {
				delete(d.Keys, id)
			}
			d.Roles[i].KeyIDs = nil
			for _, k := range fresh {
				d.Keys[k.id] = k.pub
				d.Roles[i].KeyIDs = append(d.Roles[i].KeyIDs, k.id)
			}
		}
		if err := r.commit(RoleTargets, role); err != nil {
			return err
		}
		return removeKeys(old)
	}
	err = r.resignRoot(role, fresh, func(root *metadata.RootType) error {
		for _, k := range old {
			if err := root.RevokeKey(k.id, role); err != nil {
				return fmt.Errorf("tufrepo: revoke %s key: %w", role, err)
			}
		}
		for _, k := range fresh {
			if err := root.AddKey(k.pub, role); err != nil {
				return fmt.Errorf("tufrepo: add %s key: %w", role, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return removeKeys(old)
}

// SetThreshold makes role need n signatures, generating keys of type kt until
// it has n. For root the new root version is signed by the old threshold of
// root keys and the new one, so clients can follow the chain.
func (r *Repo) SetThreshold(role string, n int, kt KeyType) error {
	if n < 1 {
		return fmt.Errorf("tufrepo: threshold %d; must be at least 1", n)
	}
	switch role {
	case RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp:
	default:
		return fmt.Errorf("tufrepo: thresholds of %q are not supported; use a top-level role", role)
	}
	have, err := r.signers(role)
	if err != nil {
		return err
	}
	var added []*privateKey
	for len(have)+len(added) < n {
		k, err := freshKey(r.keys, role, kt)
		if err != nil {
			return err
		}
		added = append(added, k)
	}
	return r.resignRoot(role, added, func(root *metadata.RootType) error {
		for _, k := range added {
			if err := root.AddKey(k.pub, role); err != nil {
				return fmt.Errorf("tufrepo: add %s key: %w", role, err)
			}
		}
		root.Roles[role].Threshold = n
		return nil
	})
}

// resignRoot makes a new root version in which change has altered the keys
// or threshold of the top-level role, then re-signs what hangs on that role.
// Step by step:
//
//  1. It loads the root keys the current root trusts (ErrNoKey when they
//     are kept offline), before anything is written.
//  2. It writes the added keys to the key directory, so they are on disk
//     before any metadata trusts them.
//  3. It applies change, bumps the root version and expiry, and signs with
//     the old root keys, plus the added ones when role is root: a client
//     trusting the old root accepts the new one only when a threshold of
//     both the old and the new root keys signed it.
//  4. It writes N.root.json and root.json, then re-signs targets (for the
//     targets role), the timestamp (for the timestamp role), or snapshot
//     and timestamp (root, snapshot), so the newest metadata is signed by
//     the keys the new root names.
//
// The caller removes retired keys only after resignRoot returns, so a crash
// at any step leaves every key that some written metadata needs.
func (r *Repo) resignRoot(role string, added []*privateKey, change func(*metadata.RootType) error) error {
	rootKeys, err := r.signers(RoleRoot)
	if err != nil {
		return err
	}
	if err := r.saveKeys(added); err != nil {
		return err
	}
	if err := change(&r.root.Signed); err != nil {
		return err
	}
	r.root.Signed.Version++
	r.root.Signed.Expires = r.expires(RoleRoot)
	signers := rootKeys
	if role == RoleRoot {
		signers = append(append([]*privateKey{}, rootKeys...), added...)
	}
	if err := sign(r.root, signers); err != nil {
		return err
	}
	if err := r.writeRoot(); err != nil {
		return err
	}
	switch role {
	case RoleTargets:
		return r.commit(RoleTargets)
	case RoleTimestamp:
		return r.commitTimestamp()
	}
	return r.commitSnapshot() // root, snapshot
}

func removeKeys(keys []*privateKey) error {
	for _, k := range keys {
		if err := os.Remove(k.file); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("tufrepo: remove retired key %s: %w", k.file, err)
		}
	}
	return nil
}

func (r *Repo) saveKeys(keys []*privateKey) error {
	for _, k := range keys {
		if err := writeKey(r.keys, filepath.Base(k.file), k.signer); err != nil {
			return err
		}
	}
	return nil
}

package tufrepo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// RotateKeys replaces every key of role with a fresh one of type kt (the
// same number of keys), re-signs what the change touches, and overwrites the
// role's key files. Top-level roles change root (a new root version, signed
// by the old and the new root keys, so clients can walk the chain); content
// and rollout change targets' delegation.
func (r *Repo) RotateKeys(role string, kt KeyType) error {
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
	// The new keys are on disk before any metadata trusts them, and the
	// old ones go only after the metadata that stops trusting them is
	// written: a crash anywhere leaves every key the metadata needs.
	if err := r.saveKeys(fresh); err != nil {
		return err
	}
	switch role {
	case RoleContent, RoleRollout:
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
	case RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp:
	default:
		return fmt.Errorf("tufrepo: unknown role %q", role)
	}
	rootKeys, err := r.signers(RoleRoot)
	if err != nil {
		return err
	}
	for _, k := range old {
		if err := r.root.Signed.RevokeKey(k.id, role); err != nil {
			return fmt.Errorf("tufrepo: revoke %s key: %w", role, err)
		}
	}
	for _, k := range fresh {
		if err := r.root.Signed.AddKey(k.pub, role); err != nil {
			return fmt.Errorf("tufrepo: add %s key: %w", role, err)
		}
	}
	r.root.Signed.Version++
	r.root.Signed.Expires = r.expires(RoleRoot)
	signers := rootKeys
	if role == RoleRoot {
		// The new root must be signed by a threshold of the old root keys
		// (which the client trusts) and of the new ones.
		signers = append(append([]*privateKey{}, rootKeys...), fresh...)
	}
	if err := sign(r.root, signers); err != nil {
		return err
	}
	if err := r.writeRoot(); err != nil {
		return err
	}
	switch role {
	case RoleTargets:
		err = r.commit(RoleTargets)
	case RoleTimestamp:
		err = r.commitTimestamp()
	default: // root, snapshot
		err = r.commitSnapshot()
	}
	if err != nil {
		return err
	}
	return removeKeys(old)
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
	oldRoot, err := r.signers(RoleRoot)
	if err != nil {
		return err
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
	if err := r.saveKeys(added); err != nil {
		return err
	}
	for _, k := range added {
		if err := r.root.Signed.AddKey(k.pub, role); err != nil {
			return err
		}
	}
	r.root.Signed.Roles[role].Threshold = n
	r.root.Signed.Version++
	r.root.Signed.Expires = r.expires(RoleRoot)
	signers := oldRoot
	if role == RoleRoot {
		signers = append(append([]*privateKey{}, oldRoot...), added...)
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
	return r.commitSnapshot()
}

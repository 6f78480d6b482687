package installer

import "errors"

var (
	// ErrSlotCorrupt is returned (wrapped) when a slot's files do not match
	// its manifest, or the manifest does not match the boot record.
	ErrSlotCorrupt = errors.New("installer: slot content does not match its manifest")
	// ErrInvalid is returned (wrapped, with the validator's problems) for
	// content that failed validation.
	ErrInvalid = errors.New("installer: content failed validation")
	// ErrQuarantined is returned when content was reverted on this host
	// before. Only a newer version, or an explicit admin action
	// (Options.Unquarantine), lets it be staged again.
	ErrQuarantined = errors.New("installer: content version is quarantined on this host (it was reverted)")
	// ErrAlreadyInstalled is returned when the content is already active.
	ErrAlreadyInstalled = errors.New("installer: content version is already active")
	// ErrReadOnly is returned for a change on a root opened read-only (a
	// read-only disk, or --dry-run).
	ErrReadOnly = errors.New("installer: root is read-only; nothing was changed")
	// ErrNoTarget is returned by Recover when the requested target cannot be
	// made active.
	ErrNoTarget = errors.New("installer: no such recovery target")
	// ErrTrialRunning is returned when content would go on trial while
	// another channel of the root is in its trial: a host runs one trial at
	// a time (docs/boot-record.md, "Several channels").
	ErrTrialRunning = errors.New("installer: another channel is in its trial")
	// ErrNoChannel is returned by a change to a boot record on a root's
	// Installer that holds no channel, or several: pick one with Channel.
	ErrNoChannel = errors.New("installer: which channel? the root holds none or several; pick one (--channel)")
)

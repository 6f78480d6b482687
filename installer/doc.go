// Package installer stages verified content into the inactive A/B slot under
// the root directory (slots/a, slots/b), each slot with a manifest of its
// files' sizes and SHA-256 digests, and activates it through the boot record
// (bootguard): the new content becomes the TRIAL slot and the current
// last-known-good its fallback. It never writes into the active slot or the
// fallback, and it refuses versions that were reverted (quarantined).
package installer

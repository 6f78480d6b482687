//go:build !windows

package installer_test

// unixPerms: file modes are meaningful here.
const unixPerms = true

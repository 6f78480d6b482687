//go:build !windows

package fileperm_test

// unixPerms: file modes are meaningful here.
const unixPerms = true

//go:build !windows

package server

// unixPerms: file modes are meaningful here.
const unixPerms = true

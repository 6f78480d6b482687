//go:build !windows

package telemetry_test

// unixPerms: file modes are meaningful here.
const unixPerms = true

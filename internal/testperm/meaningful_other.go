//go:build !windows

package testperm

// Meaningful reports whether file modes say who may read or write a file.
const Meaningful = true

//go:build cgo

package cinterp

// cSourceDigest is the SHA-256 of sensor/c/rfinterp.h and rfinterp.c (see
// sourceDigest in main_test.go) as this package was last built against them.
// cgo does not rebuild a package when a file it includes from another
// directory changes ("changes to files in other directories do not cause the
// package to be recompiled", cmd/cgo), so after an edit of the C the tests
// would run the old C and pass. A change of this constant does rebuild the
// package: TestMain refuses to run the tests while it is out of date, and
// `go test ./sensor/cinterp -update` rewrites it.
const cSourceDigest = "df976717f37cbfe2c52bec15ad141ba92316a0fb1646674914dff4aad49dd8f5"

package fileperm

import "io/fs"

// check accepts everything: Windows file modes do not describe ACLs (see
// the package comment).
func check(path, what string, mask fs.FileMode) error { return nil }

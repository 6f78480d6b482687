// Package fileperm checks that the files and directories a host or a server
// trusts are not open to other users of the machine: a boot record, a state
// directory or a key that anyone may write can be replaced under the program
// that reads it, and a secret that anyone may read is no longer a secret.
//
// The errors say what is wrong, why it matters and the chmod that fixes it,
// and wrap ErrTooOpen so callers can tell them from I/O errors.
//
// On Windows both checks return nil: Unix modes do not describe ACLs there
// (Go reports 0666 for any writable file and 0777 for any directory), and
// who may write a directory is decided by its ACL, which these checks do
// not read.
package fileperm

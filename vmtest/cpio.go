package vmtest

import (
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// CPIO writes an archive in the "newc" format the kernel unpacks an
// initramfs from (Documentation/driver-api/early-userspace/buffer-format.rst).
// It is a few dozen lines for the three entry kinds an initramfs needs, so
// it is written here rather than taken from a library.
type CPIO struct {
	w   io.Writer
	ino uint32
	err error
}

// NewCPIO returns a writer of a newc archive to w. Close writes the trailer.
func NewCPIO(w io.Writer) *CPIO { return &CPIO{w: w, ino: 1} }

// Dir adds a directory.
func (c *CPIO) Dir(name string, perm fs.FileMode) error {
	return c.entry(name, 0o040000|uint32(perm.Perm()), nil, 0, 0)
}

// File adds a regular file.
func (c *CPIO) File(name string, perm fs.FileMode, data []byte) error {
	return c.entry(name, 0o100000|uint32(perm.Perm()), data, 0, 0)
}

// CharDev adds a character device node, such as /dev/console (5, 1).
func (c *CPIO) CharDev(name string, perm fs.FileMode, major, minor uint32) error {
	return c.entry(name, 0o020000|uint32(perm.Perm()), nil, major, minor)
}

// Close writes the trailer entry.
func (c *CPIO) Close() error {
	return c.entry("TRAILER!!!", 0, nil, 0, 0)
}

func (c *CPIO) entry(name string, mode uint32, data []byte, rmajor, rminor uint32) error {
	if c.err != nil {
		return c.err
	}
	name = strings.TrimPrefix(name, "/")
	if name == "" || strings.Contains(name, "\x00") {
		return fmt.Errorf("vmtest: bad cpio entry name %q", name)
	}
	nlink := uint32(1)
	if mode&0o040000 != 0 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	c.ino++
	buf := make([]byte, 0, len(hdr)+len(name)+8+len(data))
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	buf = append(buf, data...)
	buf = pad4(buf)
	_, c.err = c.w.Write(buf)
	return c.err
}

// pad4 pads b with NULs to a multiple of 4 bytes. Every entry starts
// aligned, so padding the running entry is padding the archive.
func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

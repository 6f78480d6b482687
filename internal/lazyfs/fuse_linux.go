package lazyfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// FS is a mounted recording file system: every call under Mountpoint is
// passed through to the backing directory, and every change and sync is
// logged. fsync is logged, not passed through: the backing directory holds
// what a kill would leave, and durability is the model's business.
type FS struct {
	Mountpoint string
	backing    string
	rootIno    uint64
	srv        *fuse.Server

	mu    sync.Mutex
	base  *Image
	ops   []Op
	marks map[string]int
	on    bool
}

// MarkPrefix starts the names whose lookup in the root records a mark
// instead of looking anything up: a process under test that stats
// <root>/<MarkPrefix><name> tells the recording it passed point name (the
// loader began loading, a revert was reported) without any other channel.
const MarkPrefix = ".lazyfs-mark-"

// ErrNoFUSE says FUSE cannot be mounted here; the tests skip on it.
var ErrNoFUSE = errors.New("lazyfs: cannot mount a FUSE file system")

// Mount mounts a recording file system at mountpoint over backing (both
// existing directories). Recording starts with Start. It needs /dev/fuse and
// root (the mount is made directly, without fusermount).
func Mount(mountpoint, backing string) (*FS, error) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return nil, fmt.Errorf("%w: /dev/fuse: %v", ErrNoFUSE, err)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: not root (the mount is made with mount(2) directly)", ErrNoFUSE)
	}
	f := &FS{Mountpoint: mountpoint, backing: backing}
	var st syscall.Stat_t
	if err := syscall.Stat(backing, &st); err != nil {
		return nil, fmt.Errorf("lazyfs: backing directory: %w", err)
	}
	f.rootIno = st.Ino
	lr := &gofs.LoopbackRoot{Path: backing, Dev: uint64(st.Dev)}
	root := &fuseNode{LoopbackNode: gofs.LoopbackNode{RootData: lr}, fs: f}
	lr.RootNode = root
	zero := time.Duration(0)
	srv, err := gofs.Mount(mountpoint, root, &gofs.Options{
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{
			DirectMount:       true,
			DirectMountStrict: true,
			FsName:            "lazyfs",
			Name:              "lazyfs",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoFUSE, err)
	}
	f.srv = srv
	return f, nil
}

// Unmount unmounts the file system. Every file on it must be closed (the
// process under test has exited).
func (f *FS) Unmount() error {
	if err := f.srv.Unmount(); err != nil {
		return fmt.Errorf("lazyfs: unmount %s: %w", f.Mountpoint, err)
	}
	return nil
}

// Start takes the backing tree as durable and starts recording from empty.
func (f *FS) Start() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	im, err := Snapshot(f.backing)
	if err != nil {
		return err
	}
	f.base, f.ops, f.marks, f.on = im, nil, map[string]int{}, true
	return nil
}

// Stop stops recording and returns what was recorded since Start.
func (f *FS) Stop() Recording {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.on = false
	return Recording{Base: f.base, Ops: f.ops, Marks: f.marks}
}

func (f *FS) log(o Op) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.on {
		f.ops = append(f.ops, o)
	}
}

// fuseNode is a loopback node that logs what it changes.
type fuseNode struct {
	gofs.LoopbackNode
	fs *FS
}

var (
	_ gofs.NodeCreater   = (*fuseNode)(nil)
	_ gofs.NodeMkdirer   = (*fuseNode)(nil)
	_ gofs.NodeUnlinker  = (*fuseNode)(nil)
	_ gofs.NodeRmdirer   = (*fuseNode)(nil)
	_ gofs.NodeRenamer   = (*fuseNode)(nil)
	_ gofs.NodeLinker    = (*fuseNode)(nil)
	_ gofs.NodeSetattrer = (*fuseNode)(nil)
	_ gofs.NodeWriter    = (*fuseNode)(nil)
	_ gofs.NodeFsyncer   = (*fuseNode)(nil)
	_ gofs.NodeOpener    = (*fuseNode)(nil)
)

// WrapChild makes every node a logging one: the loopback root creates plain
// LoopbackNodes for what it looks up or creates.
func (n *fuseNode) WrapChild(_ context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	if ln, ok := ops.(*gofs.LoopbackNode); ok {
		return &fuseNode{LoopbackNode: gofs.LoopbackNode{RootData: ln.RootData}, fs: n.fs}
	}
	return ops
}

// ino is the backing inode number (go-fuse numbers the root itself).
func (n *fuseNode) ino() uint64 {
	if n.EmbeddedInode().IsRoot() {
		return n.fs.rootIno
	}
	return n.EmbeddedInode().StableAttr().Ino
}

// rel is the fuseNode's path relative to the root.
func (n *fuseNode) rel() string { return n.EmbeddedInode().Path(nil) }

func (n *fuseNode) backingPath(name string) string {
	return filepath.Join(n.RootData.Path, n.rel(), name)
}

func (n *fuseNode) childIno(name string) uint64 {
	var st unix.Stat_t
	if err := unix.Lstat(n.backingPath(name), &st); err != nil {
		return 0
	}
	return st.Ino
}

func (n *fuseNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	existed := n.childIno(name)
	in, fh, ff, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno == 0 {
		if fh, errno = wrapFile(fh); errno != 0 {
			return nil, nil, 0, errno
		}
		ino := in.StableAttr().Ino
		switch {
		case existed == 0:
			n.fs.log(Op{Kind: Create, Dir: n.ino(), Name: name, Ino: ino, Mode: fs.FileMode(mode).Perm(), Path: filepath.Join(n.rel(), name)})
		case flags&syscall.O_TRUNC != 0:
			n.fs.log(Op{Kind: Truncate, Ino: ino, Size: 0, Path: filepath.Join(n.rel(), name)})
		}
	}
	return in, fh, ff, errno
}

func (n *fuseNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fh, ff, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	if fh, errno = wrapFile(fh); errno != 0 {
		return nil, 0, errno
	}
	if flags&syscall.O_TRUNC != 0 {
		n.fs.log(Op{Kind: Truncate, Ino: n.ino(), Size: 0, Path: n.rel()})
	}
	return fh, ff, errno
}

func (n *fuseNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	in, errno := n.LoopbackNode.Mkdir(ctx, name, mode, out)
	if errno == 0 {
		n.fs.log(Op{Kind: Mkdir, Dir: n.ino(), Name: name, Ino: in.StableAttr().Ino, Mode: fs.FileMode(mode).Perm(), Path: filepath.Join(n.rel(), name)})
	}
	return in, errno
}

func (n *fuseNode) Unlink(ctx context.Context, name string) syscall.Errno {
	errno := n.LoopbackNode.Unlink(ctx, name)
	if errno == 0 {
		n.fs.log(Op{Kind: Unlink, Dir: n.ino(), Name: name, Path: filepath.Join(n.rel(), name)})
	}
	return errno
}

func (n *fuseNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	errno := n.LoopbackNode.Rmdir(ctx, name)
	if errno == 0 {
		n.fs.log(Op{Kind: Unlink, Dir: n.ino(), Name: name, Path: filepath.Join(n.rel(), name)})
	}
	return errno
}

func (n *fuseNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if flags != 0 {
		return syscall.ENOTSUP // RENAME_EXCHANGE and friends: not modelled
	}
	ino := n.childIno(name)
	np, ok := newParent.(*fuseNode)
	if !ok {
		return syscall.EXDEV
	}
	errno := n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
	if errno == 0 {
		n.fs.log(Op{Kind: Rename, Dir: n.ino(), Name: name, Dir2: np.ino(), Name2: newName, Ino: ino,
			Path: filepath.Join(n.rel(), name) + " -> " + filepath.Join(np.rel(), newName)})
	}
	return errno
}

func (n *fuseNode) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	in, errno := n.LoopbackNode.Link(ctx, target, name, out)
	if errno == 0 {
		n.fs.log(Op{Kind: Link, Dir: n.ino(), Name: name, Ino: in.StableAttr().Ino, Path: filepath.Join(n.rel(), name)})
	}
	return in, errno
}

func (n *fuseNode) Symlink(context.Context, string, string, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *fuseNode) Mknod(context.Context, string, uint32, uint32, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *fuseNode) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	errno := n.LoopbackNode.Setattr(ctx, f, in, out)
	if errno != 0 {
		return errno
	}
	if sz, ok := in.GetSize(); ok {
		n.fs.log(Op{Kind: Truncate, Ino: n.ino(), Size: int64(sz), Path: n.rel()})
	}
	if m, ok := in.GetMode(); ok {
		n.fs.log(Op{Kind: Chmod, Ino: n.ino(), Mode: fs.FileMode(m).Perm(), Path: n.rel()})
	}
	return 0
}

func (n *fuseNode) Write(ctx context.Context, f gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	w, ok := f.(gofs.FileWriter)
	if !ok {
		return 0, syscall.EBADF
	}
	written, errno := w.Write(ctx, data, off)
	if errno == 0 && written > 0 {
		n.fs.log(Op{Kind: Write, Ino: n.ino(), Off: off, Data: append([]byte(nil), data[:written]...), Path: n.rel()})
	}
	return written, errno
}

func (n *fuseNode) Allocate(context.Context, gofs.FileHandle, uint64, uint64, uint32) syscall.Errno {
	return syscall.EOPNOTSUPP // not modelled; callers fall back to writes
}

func (n *fuseNode) CopyFileRange(context.Context, gofs.FileHandle, uint64, *gofs.Inode, gofs.FileHandle, uint64, uint64, uint64) (uint32, syscall.Errno) {
	return 0, syscall.EOPNOTSUPP // not modelled; io.Copy falls back to read and write
}

func (n *fuseNode) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) syscall.Errno {
	kind := Fsync
	if n.EmbeddedInode().IsDir() {
		kind = FsyncDir
	}
	n.fs.log(Op{Kind: kind, Ino: n.ino(), Path: n.rel()})
	return 0
}

// dirHandle is what a loopback directory handle does; loggedDir logs its
// fsyncs.
type dirHandle interface {
	gofs.FileReaddirenter
	gofs.FileSeekdirer
	gofs.FileReleasedirer
	gofs.FileFsyncdirer
}

type loggedDir struct {
	dirHandle
	n *fuseNode
}

func (d loggedDir) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	d.n.fs.log(Op{Kind: FsyncDir, Ino: d.n.ino(), Path: d.n.rel()})
	return 0
}

func (n *fuseNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fh, ff, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 {
		return fh, ff, errno
	}
	dh, ok := fh.(dirHandle)
	if !ok {
		return nil, 0, syscall.ENOTSUP
	}
	return loggedDir{dh, n}, ff, 0
}

func (n *fuseNode) Writev(ctx context.Context, f gofs.FileHandle, data [][]byte, off int64) (uint32, syscall.Errno) {
	var total uint32
	for _, d := range data {
		w, errno := n.Write(ctx, f, d, off)
		total += w
		off += int64(w)
		if errno != 0 || int(w) < len(d) {
			return total, errno
		}
	}
	return total, 0
}

// fileHandle is what a loopback file handle does. The handle is wrapped so
// that it loses PassthroughFd: with FUSE passthrough (Linux 6.9 and later)
// the kernel would write the backing file itself and no write would be
// logged.
type fileHandle interface {
	gofs.FileReader
	gofs.FileWriter
	gofs.FileFlusher
	gofs.FileReleaser
	gofs.FileFsyncer
	gofs.FileGetattrer
	gofs.FileSetattrer
	gofs.FileLseeker
}

type loggedFile struct{ fileHandle }

func wrapFile(fh gofs.FileHandle) (gofs.FileHandle, syscall.Errno) {
	h, ok := fh.(fileHandle)
	if !ok {
		return nil, syscall.ENOTSUP
	}
	return loggedFile{h}, 0
}

func (f *FS) mark(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.on {
		f.marks[name] = len(f.ops)
	}
}

func (n *fuseNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if m, ok := strings.CutPrefix(name, MarkPrefix); ok && n.EmbeddedInode().IsRoot() {
		n.fs.mark(m)
		return nil, syscall.ENOENT
	}
	return n.LoopbackNode.Lookup(ctx, name, out)
}

// Package lazyfs is the file system of the power-cut tests: it records every
// change a process makes to a directory tree, with the fsync and fdatasync
// calls between them, and builds the trees a power cut at any point of that
// record could leave on disk.
//
// A kill leaves everything a process wrote in the page cache; a power cut
// does not. What a disk holds after one is the tree as it was last known to
// be durable, plus any subset of the changes made since, in any order: the
// kernel writes dirty pages back when it likes, and a disk may reorder what
// it was not told to flush. The model here is the strict POSIX one, as
// LazyFS (the file system etcd and others are tested on) and CrashMonkey
// take it:
//
//   - a change to a file's bytes, size or mode is durable once that file was
//     fsynced (or fdatasynced) after it;
//   - a change to a directory's entries (create, mkdir, rename, link, unlink,
//     rmdir) is durable once that directory was fsynced after it; a rename
//     between two directories is one change that either directory's fsync
//     makes durable (journaling file systems commit it whole);
//   - nothing else is durable. In particular an fsync of a new file does not
//     make its name durable (ext4 happens to; POSIX does not promise it), and
//     a single write(2) is the unit a cut keeps or drops (a write of one
//     sector is atomic on disks; larger writes reach the model split as the
//     kernel sent them, at most 128 KiB each).
//
// Recording happens through a FUSE file system (fuse_linux.go) that passes
// every call through to a backing directory and logs it; Recording.State
// then replays the log onto the tree as it was when recording began.
package lazyfs

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
)

// Kind is the kind of one recorded change.
type Kind uint8

// The kinds of change. Data changes belong to the file they change; entry
// changes to the directory (or two) whose entries they change; syncs make
// the earlier changes of their file or directory durable.
const (
	Write    Kind = iota + 1 // Ino, Off, Data
	Truncate                 // Ino, Size
	Chmod                    // Ino, Mode
	Create                   // Dir, Name, Ino (a new empty file, or a new name for an existing file by O_CREAT on a name that had none)
	Mkdir                    // Dir, Name, Ino
	Link                     // Dir, Name, Ino (a new name for an existing inode)
	Rename                   // Dir, Name -> Dir2, Name2 (Ino moves; whatever Dir2/Name2 named is replaced)
	Unlink                   // Dir, Name (also rmdir)
	Fsync                    // Ino: a file's data (fsync and fdatasync alike)
	FsyncDir                 // Ino: a directory's entries
)

var kindNames = [...]string{"", "write", "truncate", "chmod", "create", "mkdir", "link", "rename", "unlink", "fsync", "fsyncdir"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Op is one recorded change.
type Op struct {
	Kind        Kind
	Ino         uint64
	Dir, Dir2   uint64
	Name, Name2 string
	Off, Size   int64
	Data        []byte
	Mode        fs.FileMode
	// Path names what the op touched, relative to the root, for messages.
	Path string
}

// IsSync reports whether the op is an fsync of a file or a directory.
func (o Op) IsSync() bool { return o.Kind == Fsync || o.Kind == FsyncDir }

func (o Op) String() string {
	switch o.Kind {
	case Write:
		return fmt.Sprintf("write %s [%d,+%d)", o.Path, o.Off, len(o.Data))
	case Truncate:
		return fmt.Sprintf("truncate %s to %d", o.Path, o.Size)
	case Chmod:
		return fmt.Sprintf("chmod %s %o", o.Path, o.Mode.Perm())
	case Rename:
		return fmt.Sprintf("rename %s -> %s", o.Path, o.Name2)
	}
	return o.Kind.String() + " " + o.Path
}

// node is a file or a directory of an Image.
type node struct {
	dir  bool
	mode fs.FileMode // permission bits
	data []byte
	ents map[string]uint64
}

func (n *node) clone() *node {
	c := &node{dir: n.dir, mode: n.mode, data: slices.Clone(n.data)}
	if n.ents != nil {
		c.ents = make(map[string]uint64, len(n.ents))
		for k, v := range n.ents {
			c.ents[k] = v
		}
	}
	return c
}

// Image is a tree of directories and regular files, keyed by inode number.
type Image struct {
	root  uint64
	nodes map[uint64]*node
}

// Snapshot reads the tree under dir (directories and regular files only;
// anything else is an error: the code under test makes nothing else).
func Snapshot(dir string) (*Image, error) {
	im := &Image{nodes: map[uint64]*node{}}
	var walk func(path string) (uint64, error)
	walk = func(path string) (uint64, error) {
		fi, err := os.Lstat(path)
		if err != nil {
			return 0, err
		}
		ino, err := inodeOf(fi)
		if err != nil {
			return 0, err
		}
		n := &node{mode: fi.Mode().Perm()}
		switch {
		case fi.IsDir():
			n.dir, n.ents = true, map[string]uint64{}
			ents, err := os.ReadDir(path)
			if err != nil {
				return 0, err
			}
			for _, e := range ents {
				child, err := walk(filepath.Join(path, e.Name()))
				if err != nil {
					return 0, err
				}
				n.ents[e.Name()] = child
			}
		case fi.Mode().IsRegular():
			if n.data, err = os.ReadFile(path); err != nil {
				return 0, err
			}
		default:
			return 0, fmt.Errorf("lazyfs: %s is neither a directory nor a regular file", path)
		}
		im.nodes[ino] = n
		return ino, nil
	}
	root, err := walk(dir)
	if err != nil {
		return nil, fmt.Errorf("lazyfs: snapshot: %w", err)
	}
	im.root = root
	return im, nil
}

// Clone returns a deep copy.
func (im *Image) Clone() *Image {
	c := &Image{root: im.root, nodes: make(map[uint64]*node, len(im.nodes))}
	for k, v := range im.nodes {
		c.nodes[k] = v.clone()
	}
	return c
}

// get returns the node of ino, creating an empty file or directory for an
// inode the image never saw (one whose creation the cut dropped).
func (im *Image) get(ino uint64, dir bool) *node {
	n := im.nodes[ino]
	if n == nil {
		n = &node{dir: dir, mode: 0o600}
		if dir {
			n.ents, n.mode = map[string]uint64{}, 0o700
		}
		im.nodes[ino] = n
	}
	return n
}

// Apply makes one change. Changes whose context a cut dropped still apply
// as the disk would: a write to a file whose name never became durable
// changes an unreachable inode, a rename of a name that is not there binds
// the new name to the inode anyway (the journal records the inode, not the
// path).
func (im *Image) Apply(o Op) {
	switch o.Kind {
	case Write:
		n := im.get(o.Ino, false)
		end := o.Off + int64(len(o.Data))
		if int64(len(n.data)) < end {
			n.data = append(n.data, make([]byte, end-int64(len(n.data)))...)
		}
		copy(n.data[o.Off:], o.Data)
	case Truncate:
		n := im.get(o.Ino, false)
		if int64(len(n.data)) > o.Size {
			n.data = n.data[:o.Size]
		} else {
			n.data = append(n.data, make([]byte, o.Size-int64(len(n.data)))...)
		}
	case Chmod:
		im.get(o.Ino, false).mode = o.Mode.Perm()
	case Create, Link:
		n := im.get(o.Ino, false)
		if o.Kind == Create && o.Mode != 0 {
			n.mode = o.Mode.Perm()
		}
		im.get(o.Dir, true).ents[o.Name] = o.Ino
	case Mkdir:
		n := im.get(o.Ino, true)
		if o.Mode != 0 {
			n.mode = o.Mode.Perm()
		}
		im.get(o.Dir, true).ents[o.Name] = o.Ino
	case Rename:
		from := im.get(o.Dir, true)
		if cur, ok := from.ents[o.Name]; ok && cur == o.Ino {
			delete(from.ents, o.Name)
		}
		im.get(o.Dir2, true).ents[o.Name2] = o.Ino
	case Unlink:
		delete(im.get(o.Dir, true).ents, o.Name)
	}
}

// Materialize writes the tree reachable from the root into dir, which must
// not exist yet. A directory reached twice (which a rename cycle among
// dropped changes could make) is written once.
func (im *Image) Materialize(dir string) error {
	seen := map[uint64]bool{}
	var write func(ino uint64, path string) error
	write = func(ino uint64, path string) error {
		n := im.nodes[ino]
		if n == nil {
			return nil
		}
		if !n.dir {
			return os.WriteFile(path, n.data, n.mode)
		}
		if seen[ino] {
			return nil
		}
		seen[ino] = true
		if err := os.Mkdir(path, 0o700); err != nil {
			return err
		}
		for _, name := range sortedNames(n.ents) {
			if err := write(n.ents[name], filepath.Join(path, name)); err != nil {
				return err
			}
		}
		return os.Chmod(path, n.mode)
	}
	if err := write(im.root, dir); err != nil {
		return fmt.Errorf("lazyfs: materialize: %w", err)
	}
	return nil
}

// Digest identifies the tree reachable from the root (names, modes and
// bytes), so the same state reached by two cuts is checked once.
func (im *Image) Digest() [32]byte {
	h := sha256.New()
	seen := map[uint64]bool{}
	var walk func(ino uint64, path string)
	walk = func(ino uint64, path string) {
		n := im.nodes[ino]
		if n == nil || seen[ino] && n.dir {
			return
		}
		seen[ino] = true
		fmt.Fprintf(h, "%s\x00%v\x00%o\x00%d\x00", path, n.dir, n.mode, len(n.data))
		h.Write(n.data)
		for _, name := range sortedNames(n.ents) {
			walk(n.ents[name], path+"/"+name)
		}
	}
	walk(im.root, "")
	return [32]byte(h.Sum(nil))
}

func sortedNames(m map[string]uint64) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Recording is the tree when recording began (Base: everything in it is
// taken as durable) and the changes made since, in order.
type Recording struct {
	Base *Image
	Ops  []Op
	// Marks are the points the process under test said it passed (see
	// MarkPrefix), as the number of changes recorded before each.
	Marks map[string]int
}

// owners returns the inodes whose fsync makes op i durable.
func owners(o Op) []uint64 {
	switch o.Kind {
	case Write, Truncate, Chmod:
		return []uint64{o.Ino}
	case Create, Mkdir, Link, Unlink:
		return []uint64{o.Dir}
	case Rename:
		return []uint64{o.Dir, o.Dir2}
	}
	return nil
}

// Durable reports, for each of the first k ops, whether a sync among the
// first k made it durable.
func (r Recording) Durable(k int) []bool {
	d := make([]bool, k)
	lastSync := map[uint64]int{} // inode -> index of its last sync before k
	for i := 0; i < k; i++ {
		if r.Ops[i].IsSync() {
			lastSync[r.Ops[i].Ino] = i
		}
	}
	for i := 0; i < k; i++ {
		o := r.Ops[i]
		if o.IsSync() {
			d[i] = true
			continue
		}
		for _, ino := range owners(o) {
			if j, ok := lastSync[ino]; ok && j > i {
				d[i] = true
			}
		}
	}
	return d
}

// State returns the tree a power cut after the first k ops leaves when the
// disk kept, of the changes not yet durable, those keep says (nil keeps
// none: the LazyFS cut).
func (r Recording) State(k int, keep func(i int) bool) *Image {
	im := r.Base.Clone()
	for i, durable := range r.Durable(k) {
		if durable || keep != nil && keep(i) {
			im.Apply(r.Ops[i])
		}
	}
	return im
}

// Volatile returns the indexes among the first k ops that no sync among
// them made durable.
func (r Recording) Volatile(k int) []int {
	var v []int
	for i, d := range r.Durable(k) {
		if !d {
			v = append(v, i)
		}
	}
	return v
}

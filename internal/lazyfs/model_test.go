package lazyfs

import (
	"bytes"
	"reflect"
	"testing"
)

// image builds a base tree: root 1 holding directories a (2) and b (3).
func image() *Image {
	return &Image{root: 1, nodes: map[uint64]*node{
		1: {dir: true, mode: 0o700, ents: map[string]uint64{"a": 2, "b": 3}},
		2: {dir: true, mode: 0o700, ents: map[string]uint64{}},
		3: {dir: true, mode: 0o700, ents: map[string]uint64{}},
	}}
}

// content returns the bytes at dir/name in im, and whether the name is there.
func content(im *Image, dir uint64, name string) (string, bool) {
	ino, ok := im.nodes[dir].ents[name]
	if !ok {
		return "", false
	}
	return string(im.nodes[ino].data), true
}

func TestDurabilityRules(t *testing.T) {
	r := Recording{Base: image(), Ops: []Op{
		{Kind: Create, Dir: 2, Name: "f", Ino: 10, Mode: 0o600},         // 0
		{Kind: Write, Ino: 10, Data: []byte("hello")},                   // 1
		{Kind: Fsync, Ino: 10},                                          // 2: data durable, name not
		{Kind: FsyncDir, Ino: 2},                                        // 3: name durable
		{Kind: Rename, Dir: 2, Name: "f", Dir2: 3, Name2: "g", Ino: 10}, // 4
		{Kind: FsyncDir, Ino: 3},                                        // 5: a rename is durable by either directory's sync
		{Kind: Write, Ino: 10, Off: 5, Data: []byte(" world")},          // 6: never synced
	}}
	if _, ok := content(r.State(3, nil), 2, "f"); ok {
		t.Fatal("a file's fsync made its new name durable; only the directory's may")
	}
	if got, ok := content(r.State(4, nil), 2, "f"); !ok || got != "hello" {
		t.Fatalf("after the directory sync: %q %v, want hello", got, ok)
	}
	if got, ok := content(r.State(5, func(int) bool { return true }), 3, "g"); !ok || got != "hello" {
		t.Fatalf("kept rename: %q %v", got, ok)
	}
	im := r.State(6, nil)
	if _, ok := content(im, 2, "f"); ok {
		t.Fatal("after the destination's sync the old name survived the rename")
	}
	if got, ok := content(im, 3, "g"); !ok || got != "hello" {
		t.Fatalf("after the rename's sync: %q %v, want hello", got, ok)
	}
	if got, _ := content(r.State(7, nil), 3, "g"); got != "hello" {
		t.Fatalf("an unsynced write survived the LazyFS cut: %q", got)
	}
	if got, _ := content(r.State(7, func(i int) bool { return i == 6 }), 3, "g"); got != "hello world" {
		t.Fatalf("a kept unsynced write was lost: %q", got)
	}
	if v := r.Volatile(7); len(v) != 1 || v[0] != 6 {
		t.Fatalf("volatile after 7: %v, want [6]", v)
	}
}

func TestDroppedCreateLeavesNoName(t *testing.T) {
	r := Recording{Base: image(), Ops: []Op{
		{Kind: Create, Dir: 2, Name: ".tmp", Ino: 10},
		{Kind: Write, Ino: 10, Data: []byte("new")},
		{Kind: Fsync, Ino: 10},
		{Kind: Rename, Dir: 2, Name: ".tmp", Dir2: 2, Name2: "f", Ino: 10},
		{Kind: FsyncDir, Ino: 2},
	}}
	// The rename kept, the create dropped: the name still reaches the inode
	// with its synced data, and the temporary name never appears.
	im := r.State(4, func(i int) bool { return i == 3 })
	if got, ok := content(im, 2, "f"); !ok || got != "new" {
		t.Fatalf("%q %v", got, ok)
	}
	if _, ok := content(im, 2, ".tmp"); ok {
		t.Fatal("temporary name present")
	}
	if r.State(5, nil).Digest() != r.State(5, func(int) bool { return true }).Digest() {
		t.Fatal("after the last sync, dropping and keeping the unsynced changes differ")
	}
}

// TestRecordingRoundTrip: a recording decoded from its encoding (a VM
// guest's, read back from its disk) gives every cut's state as the original.
func TestRecordingRoundTrip(t *testing.T) {
	r := Recording{Base: image(), Marks: map[string]int{"loading": 2}, Ops: []Op{
		{Kind: Create, Dir: 2, Name: "f", Ino: 10, Mode: 0o600, Path: "a/f"},
		{Kind: Write, Ino: 10, Data: []byte("hello"), Path: "a/f"},
		{Kind: Fsync, Ino: 10, Path: "a/f"},
		{Kind: FsyncDir, Ino: 2, Path: "a"},
		{Kind: Write, Ino: 10, Off: 5, Data: []byte(" world"), Path: "a/f"},
	}}
	var buf bytes.Buffer
	if err := r.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeRecording(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Marks, r.Marks) || !reflect.DeepEqual(got.Ops, r.Ops) {
		t.Fatalf("ops or marks changed: %+v", got)
	}
	all := func(int) bool { return true }
	for k := 0; k <= len(r.Ops); k++ {
		for _, keep := range []func(int) bool{nil, all} {
			if a, b := r.State(k, keep).Digest(), got.State(k, keep).Digest(); a != b {
				t.Fatalf("cut after %d: the decoded recording gives another state", k)
			}
		}
	}
	if _, err := DecodeRecording(bytes.NewReader([]byte("not gob"))); err == nil {
		t.Fatal("garbage decoded")
	}
}

package lazyfs

import (
	"encoding/gob"
	"fmt"
	"io"
	"io/fs"
)

// A recording made in one process (a VM guest recording a kernel module's
// writes) is checked in another: Encode and DecodeRecording carry it across
// with encoding/gob, through these exported mirrors of Image's nodes.
type wireRecording struct {
	Root  uint64
	Nodes map[uint64]wireNode
	Ops   []Op
	Marks map[string]int
}

type wireNode struct {
	Dir  bool
	Mode fs.FileMode
	Data []byte
	Ents map[string]uint64
}

// maxDecode bounds what DecodeRecording reads: a recording is the test's own
// output, but it comes back from a disk image.
const maxDecode = 256 << 20

// Encode writes r to w.
func (r Recording) Encode(w io.Writer) error {
	wr := wireRecording{Ops: r.Ops, Marks: r.Marks, Nodes: map[uint64]wireNode{}}
	if r.Base != nil {
		wr.Root = r.Base.root
		for ino, n := range r.Base.nodes {
			wr.Nodes[ino] = wireNode{Dir: n.dir, Mode: n.mode, Data: n.data, Ents: n.ents}
		}
	}
	if err := gob.NewEncoder(w).Encode(wr); err != nil {
		return fmt.Errorf("lazyfs: encode the recording: %w", err)
	}
	return nil
}

// DecodeRecording reads a recording Encode wrote.
func DecodeRecording(rd io.Reader) (Recording, error) {
	var wr wireRecording
	if err := gob.NewDecoder(io.LimitReader(rd, maxDecode)).Decode(&wr); err != nil {
		return Recording{}, fmt.Errorf("lazyfs: decode the recording: %w", err)
	}
	im := &Image{root: wr.Root, nodes: make(map[uint64]*node, len(wr.Nodes))}
	for ino, n := range wr.Nodes {
		if n.Dir && n.Ents == nil {
			n.Ents = map[string]uint64{}
		}
		im.nodes[ino] = &node{dir: n.Dir, mode: n.Mode, data: n.Data, ents: n.Ents}
	}
	if im.nodes[im.root] == nil || !im.nodes[im.root].dir {
		return Recording{}, fmt.Errorf("lazyfs: decode the recording: its root %d is not a directory in it", wr.Root)
	}
	if wr.Marks == nil {
		wr.Marks = map[string]int{}
	}
	return Recording{Base: im, Ops: wr.Ops, Marks: wr.Marks}, nil
}

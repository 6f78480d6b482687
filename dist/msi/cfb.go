package msi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf16"
)

// An .msi is a Compound File Binary (MS-CFB) whose "\x05SummaryInformation"
// stream is an OLE property set (MS-OLEPS). wixl writes the package code
// (PID_REVNUMBER, a random GUID) and two timestamps (PID_CREATE_DTM,
// PID_LASTSAVE_DTM, the time of the build) there and nothing else that
// changes from one build to the next; patchSummary overwrites those three
// in place. They keep their size, so no other byte of the file moves.

const (
	pidRevNumber   = 9  // VT_LPSTR: the package code, "{GUID}"
	pidLastPrinted = 11 // VT_FILETIME
	pidCreateDTM   = 12 // VT_FILETIME
	pidLastSaveDTM = 13 // VT_FILETIME

	vtLPSTR    = 30
	vtFILETIME = 64

	cfbFree       = 0xFFFFFFFF
	cfbEndOfChain = 0xFFFFFFFE
	cfbMaxRegSect = 0xFFFFFFFA
)

var cfbMagic = []byte{0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1}

// cfb is just enough of a compound file reader to find one stream's bytes.
type cfb struct {
	data          []byte
	sectorSize    int
	miniSize      int
	miniCutoff    uint64
	fat           []uint32
	miniFAT       []uint32
	miniStreamMap []int // file offset of each mini sector
}

func parseCFB(data []byte) (*cfb, error) {
	if len(data) < 512 || !bytes.Equal(data[:8], cfbMagic) {
		return nil, errors.New("not a compound file (no CFB signature)")
	}
	le := binary.LittleEndian
	c := &cfb{data: data}
	shift := le.Uint16(data[30:])
	miniShift := le.Uint16(data[32:])
	if shift != 9 && shift != 12 || miniShift != 6 {
		return nil, fmt.Errorf("compound file: sector shift %d, mini sector shift %d", shift, miniShift)
	}
	c.sectorSize, c.miniSize = 1<<shift, 1<<miniShift
	c.miniCutoff = uint64(le.Uint32(data[56:]))

	// The FAT's sectors: 109 in the header, the rest in DIFAT sectors.
	var fatSectors []uint32
	for i := range 109 {
		if s := le.Uint32(data[76+4*i:]); s <= cfbMaxRegSect {
			fatSectors = append(fatSectors, s)
		}
	}
	difat, nDifat := le.Uint32(data[68:]), le.Uint32(data[72:])
	for i := uint32(0); i < nDifat && difat <= cfbMaxRegSect; i++ {
		sec, err := c.sector(difat)
		if err != nil {
			return nil, err
		}
		for j := 0; j < c.sectorSize/4-1; j++ {
			if s := le.Uint32(sec[4*j:]); s <= cfbMaxRegSect {
				fatSectors = append(fatSectors, s)
			}
		}
		difat = le.Uint32(sec[c.sectorSize-4:])
	}
	for _, s := range fatSectors {
		sec, err := c.sector(s)
		if err != nil {
			return nil, err
		}
		for j := 0; j < c.sectorSize/4; j++ {
			c.fat = append(c.fat, le.Uint32(sec[4*j:]))
		}
	}
	miniFAT, err := c.chain(le.Uint32(data[60:]))
	if err != nil {
		return nil, fmt.Errorf("compound file: mini FAT: %w", err)
	}
	for _, s := range miniFAT {
		sec, err := c.sector(s)
		if err != nil {
			return nil, err
		}
		for j := 0; j < c.sectorSize/4; j++ {
			c.miniFAT = append(c.miniFAT, le.Uint32(sec[4*j:]))
		}
	}
	root, err := c.entry(0)
	if err != nil {
		return nil, err
	}
	miniStream, err := c.chain(root.start)
	if err != nil {
		return nil, fmt.Errorf("compound file: mini stream: %w", err)
	}
	for _, s := range miniStream {
		for off := 0; off < c.sectorSize; off += c.miniSize {
			c.miniStreamMap = append(c.miniStreamMap, (int(s)+1)*c.sectorSize+off)
		}
	}
	return c, nil
}

func (c *cfb) sector(s uint32) ([]byte, error) {
	off := (int(s) + 1) * c.sectorSize
	if s > cfbMaxRegSect || off+c.sectorSize > len(c.data) {
		return nil, fmt.Errorf("compound file: sector %d out of range", s)
	}
	return c.data[off : off+c.sectorSize], nil
}

// chain follows a chain of the FAT from start.
func (c *cfb) chain(start uint32) ([]uint32, error) {
	var out []uint32
	for s := start; s != cfbEndOfChain && s != cfbFree; {
		if int(s) >= len(c.fat) || len(out) > len(c.fat) {
			return nil, fmt.Errorf("broken FAT chain at sector %d", s)
		}
		out = append(out, s)
		s = c.fat[s]
	}
	return out, nil
}

type cfbEntry struct {
	name  string
	typ   byte
	start uint32
	size  uint64
}

func (c *cfb) entry(i int) (cfbEntry, error) {
	dir, err := c.chain(binary.LittleEndian.Uint32(c.data[48:]))
	if err != nil {
		return cfbEntry{}, fmt.Errorf("compound file: directory: %w", err)
	}
	perSector := c.sectorSize / 128
	if i/perSector >= len(dir) {
		return cfbEntry{}, fmt.Errorf("compound file: directory entry %d out of range", i)
	}
	sec, err := c.sector(dir[i/perSector])
	if err != nil {
		return cfbEntry{}, err
	}
	e := sec[(i%perSector)*128:][:128]
	le := binary.LittleEndian
	n := int(le.Uint16(e[64:]))
	if n > 64 {
		n = 64
	}
	u := make([]uint16, 0, 32)
	for j := 0; j+1 < n; j += 2 {
		if v := le.Uint16(e[j:]); v != 0 {
			u = append(u, v)
		}
	}
	return cfbEntry{name: string(utf16.Decode(u)), typ: e[66], start: le.Uint32(e[116:]), size: le.Uint64(e[120:])}, nil
}

// streamOffsets returns the file offset of every byte of the named stream
// (a top-level stream: the summary information is one).
func (c *cfb) streamOffsets(name string) ([]int, error) {
	dir, err := c.chain(binary.LittleEndian.Uint32(c.data[48:]))
	if err != nil {
		return nil, err
	}
	for i := 0; i < len(dir)*c.sectorSize/128; i++ {
		e, err := c.entry(i)
		if err != nil {
			return nil, err
		}
		if e.typ != 2 || e.name != name {
			continue
		}
		var offs []int
		if e.size < c.miniCutoff {
			for m := e.start; m != cfbEndOfChain && uint64(len(offs)) < e.size; {
				if int(m) >= len(c.miniFAT) || int(m) >= len(c.miniStreamMap) {
					return nil, fmt.Errorf("compound file: stream %q: broken mini chain", name)
				}
				for j := 0; j < c.miniSize; j++ {
					offs = append(offs, c.miniStreamMap[m]+j)
				}
				m = c.miniFAT[m]
			}
		} else {
			secs, err := c.chain(e.start)
			if err != nil {
				return nil, err
			}
			for _, s := range secs {
				for j := 0; j < c.sectorSize; j++ {
					offs = append(offs, (int(s)+1)*c.sectorSize+j)
				}
			}
		}
		if uint64(len(offs)) < e.size {
			return nil, fmt.Errorf("compound file: stream %q is shorter than its size", name)
		}
		return offs[:e.size], nil
	}
	return nil, fmt.Errorf("compound file: no stream %q", name)
}

// summaryInfo is the summary information stream's name.
const summaryInfo = "\x05SummaryInformation"

// patchSummary sets the package code and every timestamp of the summary
// information, in place.
func patchSummary(data []byte, packageCode string, t time.Time) error {
	c, err := parseCFB(data)
	if err != nil {
		return err
	}
	offs, err := c.streamOffsets(summaryInfo)
	if err != nil {
		return err
	}
	s := make([]byte, len(offs))
	for i, o := range offs {
		s[i] = data[o]
	}
	patched, err := patchPropertySet(s, packageCode, t)
	if err != nil {
		return fmt.Errorf("summary information: %w", err)
	}
	for i, o := range offs {
		data[o] = patched[i]
	}
	return nil
}

// patchPropertySet edits a copy of an MS-OLEPS property set stream.
func patchPropertySet(s []byte, packageCode string, t time.Time) ([]byte, error) {
	le := binary.LittleEndian
	s = bytes.Clone(s)
	if len(s) < 48 || le.Uint16(s) != 0xFFFE {
		return nil, errors.New("not a property set stream")
	}
	base := int(le.Uint32(s[44:]))
	if base+8 > len(s) {
		return nil, errors.New("property set offset out of range")
	}
	n := int(le.Uint32(s[base+4:]))
	seen := map[uint32]bool{}
	for i := range n {
		h := base + 8 + 8*i
		if h+8 > len(s) {
			return nil, errors.New("property table out of range")
		}
		pid, off := le.Uint32(s[h:]), base+int(le.Uint32(s[h+4:]))
		if off+8 > len(s) {
			return nil, fmt.Errorf("property %d out of range", pid)
		}
		vt := le.Uint32(s[off:]) & 0xFFFF
		switch {
		case pid == pidRevNumber && vt == vtLPSTR:
			size := int(le.Uint32(s[off+4:]))
			want := append([]byte(packageCode), 0)
			if size != len(want) || off+8+size > len(s) {
				return nil, fmt.Errorf("package code is %d bytes, not %d", size, len(want))
			}
			copy(s[off+8:], want)
			seen[pid] = true
		case (pid == pidCreateDTM || pid == pidLastSaveDTM || pid == pidLastPrinted) && vt == vtFILETIME:
			le.PutUint64(s[off+4:], filetime(t))
			seen[pid] = true
		}
	}
	for _, pid := range []uint32{pidRevNumber, pidCreateDTM, pidLastSaveDTM} {
		if !seen[pid] {
			return nil, fmt.Errorf("property %d not found", pid)
		}
	}
	return s, nil
}

// filetime is t in 100 ns intervals since 1601-01-01 UTC.
func filetime(t time.Time) uint64 {
	const epochDiff = 11644473600 // seconds from 1601 to 1970
	return uint64(t.Unix()+epochDiff)*1e7 + uint64(t.Nanosecond()/100)
}

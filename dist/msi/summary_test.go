package msi

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// readSummary returns the package code and the timestamps (FILETIME values,
// by property id) of an .msi's summary information.
func readSummary(data []byte) (packageCode string, times map[uint32]uint64, err error) {
	c, err := parseCFB(data)
	if err != nil {
		return "", nil, err
	}
	offs, err := c.streamOffsets(summaryInfo)
	if err != nil {
		return "", nil, err
	}
	s := make([]byte, len(offs))
	for i, o := range offs {
		s[i] = data[o]
	}
	le := binary.LittleEndian
	if len(s) < 48 {
		return "", nil, fmt.Errorf("summary information: %d bytes", len(s))
	}
	base := int(le.Uint32(s[44:]))
	times = map[uint32]uint64{}
	for i := range int(le.Uint32(s[base+4:])) {
		h := base + 8 + 8*i
		pid, off := le.Uint32(s[h:]), base+int(le.Uint32(s[h+4:]))
		switch le.Uint32(s[off:]) & 0xFFFF {
		case vtLPSTR:
			if pid == pidRevNumber {
				size := int(le.Uint32(s[off+4:]))
				packageCode = string(bytes.TrimRight(s[off+8:off+8+size], "\x00"))
			}
		case vtFILETIME:
			times[pid] = le.Uint64(s[off+4:])
		}
	}
	return packageCode, times, nil
}

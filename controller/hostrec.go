package controller

import (
	"encoding/binary"
	"maps"
	"slices"
	"time"
	"unique"
)

// This file is the controller's own record of a host. A leader holds
// millions of hosts, so it keeps each in a compact record rather than a
// Host: what many hosts share (the versions they run, their fleet, tags
// and who admitted them, their sensor and manifest) is interned once, and
// the records lie in one slice, which a gate evaluation walks in order. A
// Host is made from a record when a caller asks for one (Host, HostList,
// Changes): it is a copy, which later changes to the fleet do not touch.

// hostRec is one admitted host (see Host for what each field means).
type hostRec struct {
	id       string
	lastSeen time.Time
	admitted time.Time
	lastSeq  uint64
	// vers is the versions the host runs, interned (versionsKey); the zero
	// handle is a host that never said (a nil Versions).
	vers unique.Handle[string]
	// tracks are the host's tracks; nil when it has none (most hosts: a
	// host gets one when it takes part in a rollout).
	tracks *[]Track
	prof   unique.Handle[profile]
	sensor unique.Handle[sensorInfo]
	bucket int32
	// health is the host's last health sample (at 0: it sent none).
	health hostHealth
}

// profile is the server's record of a host that many hosts share: its
// fleet, who admitted it and its tags (encoded: tagsKey).
type profile struct {
	fleet, by string
	tags      string
	hasTags   bool // Tags is not nil (it may be empty)
}

// sensorInfo is what a host last said of its installed sensor.
type sensorInfo struct{ sensor, manifest string }

var noVersions unique.Handle[string] // the zero handle: no versions map

// versionsKey is the interned form of a versions map: each channel and
// its version as 8 bytes, little-endian, by channel.
func versionsKey(m map[uint32]uint32) unique.Handle[string] {
	b := make([]byte, 0, 8*len(m))
	if len(m) == 1 {
		for ch, v := range m {
			b = binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(b, ch), v)
		}
	} else {
		for _, ch := range slices.Sorted(maps.Keys(m)) {
			b = binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(b, ch), m[ch])
		}
	}
	return unique.Make(string(b))
}

// version returns the version the host runs on the channel, if it said.
func (h *hostRec) version(channel uint32) (uint32, bool) {
	if h.vers == noVersions {
		return 0, false
	}
	s := h.vers.Value()
	for i := 0; i+8 <= len(s); i += 8 {
		if le32(s, i) == channel {
			return le32(s, i+4), true
		}
	}
	return 0, false
}

// le32 is the little-endian uint32 at s[i:].
func le32(s string, i int) uint32 {
	return uint32(s[i]) | uint32(s[i+1])<<8 | uint32(s[i+2])<<16 | uint32(s[i+3])<<24
}

// uvarint decodes the length at the start of s (binary.AppendUvarint):
// the length and the bytes it took.
func uvarint(s string) (n, k int) {
	for shift := 0; ; shift += 7 {
		b := s[k]
		k++
		n |= int(b&0x7f) << shift
		if b < 0x80 {
			return n, k
		}
	}
}

// versionOf is hostRec.version for one channel over many hosts: hosts
// share few interned versions, so it looks each up once in a row.
type versionOf struct {
	channel uint32
	known   bool
	key     unique.Handle[string]
	v       uint32
	on      bool
}

func (vo *versionOf) of(h *hostRec) (uint32, bool) {
	if !vo.known || h.vers != vo.key {
		vo.known, vo.key = true, h.vers
		vo.v, vo.on = h.version(vo.channel)
	}
	return vo.v, vo.on
}

// versions is the host's versions as a new map (nil if it never said).
func (h *hostRec) versions() map[uint32]uint32 {
	if h.vers == noVersions {
		return nil
	}
	s := h.vers.Value()
	m := make(map[uint32]uint32, len(s)/8)
	for i := 0; i+8 <= len(s); i += 8 {
		m[le32(s, i)] = le32(s, i+4)
	}
	return m
}

// profileOf interns a host's fleet, admitter and tags.
func profileOf(fleet, by string, tags []string) unique.Handle[profile] {
	p := profile{fleet: fleet, by: by, hasTags: tags != nil}
	if len(tags) > 0 {
		var b []byte
		for _, t := range tags {
			b = binary.AppendUvarint(b, uint64(len(t)))
			b = append(b, t...)
		}
		p.tags = string(b)
	}
	return unique.Make(p)
}

// eachTag calls f with each tag, in order, until f returns false.
func (p profile) eachTag(f func(string) bool) {
	s := p.tags
	for len(s) > 0 {
		n, k := uvarint(s)
		t := s[k : k+n]
		s = s[k+n:]
		if !f(t) {
			return
		}
	}
}

// tagList is the tags as a new slice.
func (p profile) tagList() []string {
	if !p.hasTags {
		return nil
	}
	out := []string{}
	p.eachTag(func(t string) bool {
		out = append(out, t)
		return true
	})
	return out
}

// hasAny reports whether the host has one of tags.
func (p profile) hasAny(tags []string) bool {
	found := false
	p.eachTag(func(t string) bool {
		found = slices.Contains(tags, t)
		return !found
	})
	return found
}

func sensorOf(sensor, manifest string) unique.Handle[sensorInfo] {
	return unique.Make(sensorInfo{sensor, manifest})
}

// recOf is the record of h (a deep copy).
func recOf(h *Host) hostRec {
	r := hostRec{id: h.ID, lastSeen: h.LastSeen, admitted: h.Admitted, lastSeq: h.LastSeq, bucket: int32(h.Bucket),
		prof: profileOf(h.Fleet, h.AdmittedBy, h.Tags), sensor: sensorOf(h.Sensor, h.Manifest)}
	if h.Versions != nil {
		r.vers = versionsKey(h.Versions)
	}
	if h.Tracks != nil {
		t := slices.Clone(h.Tracks)
		r.tracks = &t
	}
	return r
}

// host is the host as a new Host.
func (h *hostRec) host() *Host {
	out := new(Host)
	h.fill(out, nil)
	return out
}

// shared are the Versions maps and Tags slices that the hosts of one
// HostList share, one per interned value: a million hosts on the same
// versions need not cost a million maps.
type shared struct {
	versions map[unique.Handle[string]]map[uint32]uint32
	tags     map[unique.Handle[profile]][]string
}

// fill makes out the host; sh, if not nil, shares its maps and slices.
func (h *hostRec) fill(out *Host, sh *shared) {
	p, s := h.prof.Value(), h.sensor.Value()
	var versions map[uint32]uint32
	var tags []string
	if sh == nil {
		versions, tags = h.versions(), p.tagList()
	} else {
		var ok bool
		if versions, ok = sh.versions[h.vers]; !ok {
			versions = h.versions()
			sh.versions[h.vers] = versions
		}
		if tags, ok = sh.tags[h.prof]; !ok {
			tags = p.tagList()
			sh.tags[h.prof] = tags
		}
	}
	*out = Host{Versions: versions, LastSeen: h.lastSeen, Bucket: int(h.bucket), ID: h.id, Fleet: p.fleet, Tags: tags,
		Admitted: h.admitted, AdmittedBy: p.by, LastSeq: h.lastSeq, Sensor: s.sensor, Manifest: s.manifest}
	if h.tracks != nil {
		out.Tracks = slices.Clone(*h.tracks)
	}
}

// clone is a deep copy of h (a before-image).
func (h *hostRec) clone() hostRec {
	c := *h
	if h.tracks != nil {
		t := slices.Clone(*h.tracks)
		c.tracks = &t
	}
	return c
}

// track returns the host's track in the rollout of to on channel, making
// it (and dropping the channel's track of an earlier rollout) if need be.
func (h *hostRec) track(channel, to uint32) *Track {
	if h.tracks == nil {
		h.tracks = new([]Track)
	}
	ts := *h.tracks
	for i := range ts {
		if ts[i].Channel == channel {
			if ts[i].To != to {
				ts[i] = Track{Channel: channel, To: to}
			}
			return &ts[i]
		}
	}
	*h.tracks = append(ts, Track{Channel: channel, To: to})
	return &(*h.tracks)[len(ts)]
}

// peek returns the host's track in the rollout, or nil.
func (h *hostRec) peek(channel, to uint32) *Track {
	if h.tracks == nil {
		return nil
	}
	ts := *h.tracks
	for i := range ts {
		if ts[i].Channel == channel && ts[i].To == to {
			return &ts[i]
		}
	}
	return nil
}

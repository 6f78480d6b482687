package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
)

// deb is a .deb read back with Go alone (ar, then the gzipped tarballs), so
// the checks run where dpkg is not installed too.
type deb struct {
	members []arMember        // in order
	control map[string]tarEnt // ./control, ./conffiles, ./postinst, ...
	data    map[string]tarEnt // ./usr/bin/ringfenced, ./var/lib/ringfence/, ...
	order   []string          // data entries in archive order
}

type arMember struct {
	name  string
	mtime int64
	body  []byte
}

type tarEnt struct {
	hdr  *tar.Header
	body []byte
}

func readDeb(t *testing.T, path string) deb {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	members, err := readAr(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	d := deb{members: members}
	for _, m := range members {
		switch m.name {
		case "control.tar.gz":
			if d.control, _, err = readTarGz(m.body); err != nil {
				t.Fatalf("%s: control.tar.gz: %v", path, err)
			}
		case "data.tar.gz":
			if d.data, d.order, err = readTarGz(m.body); err != nil {
				t.Fatalf("%s: data.tar.gz: %v", path, err)
			}
		}
	}
	if d.control == nil || d.data == nil {
		t.Fatalf("%s: members %v; want control.tar.gz and data.tar.gz", path, d.names())
	}
	return d
}

func (d deb) names() []string {
	var n []string
	for _, m := range d.members {
		n = append(n, m.name)
	}
	return n
}

// readAr reads a common-format ar archive: "!<arch>\n", then per member a
// 60-byte header and the body, padded to an even length.
func readAr(b []byte) ([]arMember, error) {
	const magic = "!<arch>\n"
	if !bytes.HasPrefix(b, []byte(magic)) {
		return nil, fmt.Errorf("not an ar archive")
	}
	b = b[len(magic):]
	var out []arMember
	for len(b) > 0 {
		if len(b) < 60 || string(b[58:60]) != "`\n" {
			return nil, fmt.Errorf("bad ar header after %d members", len(out))
		}
		h := b[:60]
		size, err := strconv.ParseInt(strings.TrimSpace(string(h[48:58])), 10, 64)
		if err != nil || size < 0 || int64(len(b)-60) < size {
			return nil, fmt.Errorf("bad ar member size %q", h[48:58])
		}
		mtime, err := strconv.ParseInt(strings.TrimSpace(string(h[16:28])), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad ar mtime %q", h[16:28])
		}
		name := strings.TrimRight(strings.TrimSpace(string(h[:16])), "/")
		out = append(out, arMember{name: name, mtime: mtime, body: b[60 : 60+size]})
		b = b[60+size:]
		if size%2 == 1 && len(b) > 0 {
			b = b[1:]
		}
	}
	return out, nil
}

func readTarGz(b []byte) (map[string]tarEnt, []string, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, nil, err
	}
	tr := tar.NewReader(zr)
	m := map[string]tarEnt{}
	var order []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return m, order, nil
		}
		if err != nil {
			return nil, nil, err
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			return nil, nil, err
		}
		m[h.Name] = tarEnt{hdr: h, body: body}
		order = append(order, h.Name)
	}
}

package validator

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// seedChannels adds every testdata channel file to the corpus.
func seedChannels(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join(channelDir, "*.rfch"))
	if len(paths) == 0 {
		f.Fatal("no seed files in testdata/channels")
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParse: Parse never panics; whatever it accepts encodes back to the
// same bytes (one canonical encoding) and parses back to the same file.
func FuzzParse(f *testing.F) {
	seedChannels(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		cf, err := Parse(data)
		if err != nil {
			if _, ok := err.(*FormatError); !ok {
				t.Fatalf("Parse returned %T, want *FormatError", err)
			}
			return
		}
		enc, err := Encode(cf)
		if err != nil {
			t.Fatalf("Encode of a parsed file: %v", err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("encoding is not canonical: %d bytes in, %d out", len(data), len(enc))
		}
		again, err := Parse(enc)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if len(again.Instances) != len(cf.Instances) || again.Checksum != cf.Checksum {
			t.Fatal("parse -> encode -> parse changed the file")
		}
	})
}

// FuzzValidate: Validate never panics, with both sensors' capabilities,
// and a file it accepts also parses.
func FuzzValidate(f *testing.F) {
	seedChannels(f)
	caps := []*Capabilities{loadCaps(f, "7.11"), loadCaps(f, "7.12")}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range caps {
			cf, ps := Validate(data, c, Options{Installed: &Installed{Channel: 291, ContentVersion: 1001}})
			if !ps.HasErrors() && cf == nil {
				t.Fatal("accepted a file that did not parse")
			}
			for _, p := range ps {
				if p.Code == "" || p.Message == "" {
					t.Fatalf("problem without code or message: %+v", p)
				}
			}
		}
	})
}

// FuzzDecodeSource: the JSON description never panics the decoder, and a
// description that encodes comes back the same through EncodeSource.
func FuzzDecodeSource(f *testing.F) {
	srcs, _ := filepath.Glob(filepath.Join(channelDir, "src", "*.json"))
	for _, s := range srcs {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"fields":["string"],"instances":[{"id":1,"action":"log","match":[{"field":1,"eq":"a"}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cf, err := DecodeSource(data)
		if err != nil {
			return
		}
		bin, err := Encode(cf)
		if err != nil {
			return // over a limit: Encode refuses, as it must
		}
		src, err := EncodeSource(cf)
		if err != nil {
			t.Fatalf("EncodeSource of an encodable file: %v", err)
		}
		back, err := DecodeSource(src)
		if err != nil {
			t.Fatalf("DecodeSource of EncodeSource output: %v\n%s", err, src)
		}
		bin2, err := Encode(back)
		if err != nil || !bytes.Equal(bin, bin2) {
			t.Fatalf("description round trip changed the file: %v", err)
		}
	})
}

// FuzzParseCapabilities: manifests never panic the parser, and an accepted
// manifest has what Validate relies on.
func FuzzParseCapabilities(f *testing.F) {
	for _, v := range []string{"7.11", "7.12"} {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "capabilities", "sensor-"+v+".json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCapabilities(data)
		if err != nil {
			return
		}
		for _, tt := range c.TemplateTypes {
			if len(tt.Inputs) == 0 || len(tt.Inputs) > MaxFields || c.Template(tt.ID) == nil {
				t.Fatalf("accepted a template type Validate cannot use: %+v", tt)
			}
			for _, in := range tt.Inputs {
				if in.Type != FieldString && in.Type != FieldUint {
					t.Fatalf("accepted unknown input type %d", in.Type)
				}
			}
		}
	})
}

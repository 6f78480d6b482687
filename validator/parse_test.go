package validator

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func goodFiles(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(channelDir, "*.rfch"))
	require.NoError(t, err)
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		out[filepath.Base(p)] = b
	}
	return out
}

// TestCanonical checks parse -> encode gives the same bytes for every file
// that parses, and parse -> encode -> parse gives the same file.
func TestCanonical(t *testing.T) {
	for name, data := range goodFiles(t) {
		t.Run(name, func(t *testing.T) {
			f, err := Parse(data)
			if err != nil {
				var fe *FormatError
				require.ErrorAs(t, err, &fe)
				return
			}
			enc, err := Encode(f)
			require.NoError(t, err)
			require.Equal(t, data, enc)
			g, err := Parse(enc)
			require.NoError(t, err)
			require.Equal(t, f, g)
		})
	}
}

// TestEveryTruncation cuts a good file at every length: each cut is
// rejected with a structural code, never a panic.
func TestEveryTruncation(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(channelDir, "good-ipc-1003.rfch"))
	require.NoError(t, err)
	for n := range len(data) {
		_, err := Parse(data[:n])
		var fe *FormatError
		require.ErrorAs(t, err, &fe, "length %d", n)
		require.Contains(t, []Code{CodeTruncated, CodeBadMagic}, fe.Code, "length %d: %v", n, err)
	}
}

func TestParseHeader(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(channelDir, "good-ipc-1001.rfch"))
	require.NoError(t, err)
	tests := []struct {
		name   string
		mutate func([]byte) []byte
		want   Code
	}{
		{"empty", func([]byte) []byte { return nil }, CodeTruncated},
		{"magic prefix only", func([]byte) []byte { return []byte("RF") }, CodeTruncated},
		{"not a channel file", func([]byte) []byte { return []byte("PK\x03\x04 zip file") }, CodeBadMagic},
		{"format version 2", func(b []byte) []byte { b[4] = 2; return b }, CodeUnsupportedFormat},
		{"flags set", func(b []byte) []byte { b[6] = 1; return fixChecksum(b) }, CodeNonCanonical},
		{"reserved set", func(b []byte) []byte { b[23] = 1; return fixChecksum(b) }, CodeNonCanonical},
		{"zero fields", func(b []byte) []byte { b[20], b[21] = 0, 0; return fixChecksum(b) }, CodeCountLimit},
		{"65 fields", func(b []byte) []byte { b[20] = MaxFields + 1; return fixChecksum(b) }, CodeCountLimit},
		{"instance count past body", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[24:], 100000); return fixChecksum(b) }, CodeTruncated},
		{"unknown field type", func(b []byte) []byte { b[HeaderSize] = 7; return fixChecksum(b) }, CodeBadFieldType},
		{"unknown action", func(b []byte) []byte { b[HeaderSize+24] = 9; return fixChecksum(b) }, CodeBadAction},
		{"too large", func(b []byte) []byte { return make([]byte, MaxFileSize+1) }, CodeTooLarge},
		{"body length past end", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[28:], 1<<31); return b }, CodeTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.mutate(bytes.Clone(good)))
			var fe *FormatError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, tt.want, fe.Code, "%v", err)
			require.NotEmpty(t, fe.Msg)
		})
	}
}

func TestEncodeRefuses(t *testing.T) {
	base := func() *ChannelFile {
		return &ChannelFile{Channel: 1, ContentVersion: 1, TemplateType: 7, TemplateVersion: 1,
			Fields:    []FieldType{FieldString, FieldUint},
			Instances: []Instance{{ID: 1, Action: ActionLog, Matchers: []Matcher{{Field: 0, Kind: MatchEqualString, Str: "x"}}}}}
	}
	tests := []struct {
		name   string
		mutate func(*ChannelFile)
	}{
		{"no fields", func(f *ChannelFile) { f.Fields = nil }},
		{"unknown field type", func(f *ChannelFile) { f.Fields[1] = 9 }},
		{"unknown action", func(f *ChannelFile) { f.Instances[0].Action = 0 }},
		{"matcher past fields", func(f *ChannelFile) { f.Instances[0].Matchers[0].Field = 2 }},
		{"matchers out of order", func(f *ChannelFile) {
			f.Instances[0].Matchers = []Matcher{{Field: 1, Kind: MatchRange, Hi: 1}, {Field: 0, Kind: MatchPrefix}}
		}},
		{"explicit wildcard", func(f *ChannelFile) { f.Instances[0].Matchers[0].Kind = MatchAny }},
		{"long string", func(f *ChannelFile) { f.Instances[0].Matchers[0].Str = string(make([]byte, MaxStringLen+1)) }},
		{"long pattern", func(f *ChannelFile) {
			f.Instances[0].Matchers[0] = Matcher{Kind: MatchPattern, Str: string(make([]byte, MaxPatternLen+1))}
		}},
	}
	_, err := Encode(base())
	require.NoError(t, err)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := base()
			tt.mutate(f)
			_, err := Encode(f)
			require.True(t, errors.Is(err, ErrEncode), "%v", err)
		})
	}
}

func TestSourceRoundTrip(t *testing.T) {
	srcs, err := filepath.Glob(filepath.Join(channelDir, "src", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, srcs)
	for _, s := range srcs {
		t.Run(filepath.Base(s), func(t *testing.T) {
			data, err := os.ReadFile(s)
			require.NoError(t, err)
			f, err := DecodeSource(data)
			require.NoError(t, err)
			out, err := EncodeSource(f)
			require.NoError(t, err)
			require.Equal(t, string(data), string(out), "the committed source is not in EncodeSource's layout")
		})
	}
}

func TestDecodeSourceErrors(t *testing.T) {
	tests := map[string]string{
		"unknown member":   `{"channel":1,"fields":["string"],"instances":[],"extra":1}`,
		"two operands":     `{"fields":["string"],"instances":[{"id":1,"action":"log","match":[{"field":1,"eq":"a","prefix":"b"}]}]}`,
		"no operand":       `{"fields":["string"],"instances":[{"id":1,"action":"log","match":[{"field":1}]}]}`,
		"field zero":       `{"fields":["string"],"instances":[{"id":1,"action":"log","match":[{"field":0,"eq":"a"}]}]}`,
		"fields unordered": `{"fields":["string","string"],"instances":[{"id":1,"action":"log","match":[{"field":2,"eq":"a"},{"field":1,"eq":"b"}]}]}`,
		"bad action":       `{"fields":["string"],"instances":[{"id":1,"action":"nuke","match":[]}]}`,
		"bad field type":   `{"fields":["float"],"instances":[]}`,
		"trailing data":    `{"fields":["string"],"instances":[]} {}`,
		"not json":         `channel 291`,
	}
	for name, src := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeSource([]byte(src))
			require.ErrorIs(t, err, ErrSource)
		})
	}
}

package validator

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidateCF291Message(t *testing.T) {
	data, err := ReadFile(filepath.Join(channelDir, "cf291-shape.rfch"))
	require.NoError(t, err)
	f, ps := Validate(data, loadCaps(t, "7.11"), Options{})
	require.NotNil(t, f)
	var msgs []string
	for _, p := range ps {
		if p.Code == CodeFieldNotSupplied {
			require.Equal(t, 21, p.Field)
			msgs = append(msgs, p.Message)
		}
	}
	require.Equal(t, []string{
		"instance 1, field 21: template type IPC (id 7) declares 21 fields but sensor 7.11 supplies 20",
		"instance 2, field 21: template type IPC (id 7) declares 21 fields but sensor 7.11 supplies 20",
		"instance 3, field 21: template type IPC (id 7) declares 21 fields but sensor 7.11 supplies 20",
	}, msgs)
	require.Error(t, ps.Err())
}

func TestValidateOptions(t *testing.T) {
	data, err := ReadFile(filepath.Join(channelDir, "good-ipc-1002.rfch"))
	require.NoError(t, err)
	caps := loadCaps(t, "7.11")
	tests := []struct {
		name      string
		installed *Installed
		reject    bool
	}{
		{"nothing installed", nil, false},
		{"older installed", &Installed{Channel: 291, ContentVersion: 1001}, false},
		{"same installed", &Installed{Channel: 291, ContentVersion: 1002}, true},
		{"newer installed", &Installed{Channel: 291, ContentVersion: 1003}, true},
		{"other channel", &Installed{Channel: 292, ContentVersion: 5000}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ps := Validate(data, caps, Options{Installed: tt.installed})
			require.Equal(t, tt.reject, ps.HasErrors(), "%v", ps)
			if tt.reject {
				require.Equal(t, CodeVersionNotMonotonic, ps[0].Code)
			}
		})
	}
}

func TestValidateInCode(t *testing.T) {
	caps := loadCaps(t, "7.11")
	mk := func(fields []FieldType, ins ...Instance) *ChannelFile {
		return &ChannelFile{Channel: 1, ContentVersion: 1, TemplateType: 1, TemplateVersion: 1, Fields: fields, Instances: ins}
	}
	str8 := []FieldType{FieldString, FieldString, FieldUint, FieldString, FieldUint, FieldString, FieldUint, FieldString}
	eq := func(f uint16, s string) Matcher { return Matcher{Field: f, Kind: MatchEqualString, Str: s} }
	tests := []struct {
		name string
		f    *ChannelFile
		caps *Capabilities
		want []Code
	}{
		{"clean", mk(str8, Instance{ID: 1, Action: ActionLog, Matchers: []Matcher{eq(0, "a")}}), caps, nil},
		{"no caps", mk(str8, Instance{ID: 1, Action: ActionLog, Matchers: []Matcher{eq(0, "a")}}), nil, []Code{CodeUnknownTemplate}},
		{"unknown template", func() *ChannelFile {
			f := mk(str8, Instance{ID: 1, Action: ActionLog, Matchers: []Matcher{eq(0, "a")}})
			f.TemplateType = 99
			return f
		}(), caps, []Code{CodeUnknownTemplate}},
		{"template version", func() *ChannelFile {
			f := mk(str8, Instance{ID: 1, Action: ActionLog, Matchers: []Matcher{eq(0, "a")}})
			f.TemplateVersion = 2
			return f
		}(), caps, []Code{CodeTemplateVersion}},
		{"declared type differs", mk(append([]FieldType{FieldUint}, str8[1:]...), Instance{ID: 1, Action: ActionLog, Matchers: []Matcher{eq(1, "a")}}), caps, []Code{CodeFieldTypeMismatch}},
		{"matches everything", mk(str8, Instance{ID: 1, Action: ActionLog, Matchers: []Matcher{{Field: 0, Kind: MatchPrefix}, {Field: 1, Kind: MatchPattern, Str: "**"}}}), caps, []Code{CodeMatchesEverything}},
		{"duplicate", mk(str8, Instance{ID: 1, Action: ActionLog, Matchers: []Matcher{eq(0, "a")}}, Instance{ID: 2, Action: ActionLog, Matchers: []Matcher{eq(0, "a")}}), caps, []Code{CodeDuplicateInstance}},
		{"three alike, one unlike", mk(str8,
			Instance{ID: 1, Action: ActionLog, Matchers: []Matcher{eq(0, "a")}}, Instance{ID: 2, Action: ActionLog, Matchers: []Matcher{eq(1, "a")}},
			Instance{ID: 3, Action: ActionLog, Matchers: []Matcher{eq(0, "a")}}, Instance{ID: 4, Action: ActionAlert, Matchers: []Matcher{eq(0, "a")}}),
			caps, []Code{CodeDuplicateInstance, CodeContradictory}},
		{"ids out of order but unique", mk(str8, Instance{ID: 9, Action: ActionLog, Matchers: []Matcher{eq(0, "a")}}, Instance{ID: 2, Action: ActionLog, Matchers: []Matcher{eq(0, "b")}}), caps, nil},
		{"duplicate id out of order", mk(str8, Instance{ID: 9, Action: ActionLog, Matchers: []Matcher{eq(0, "a")}}, Instance{ID: 2, Action: ActionLog, Matchers: []Matcher{eq(0, "b")}}, Instance{ID: 9, Action: ActionLog, Matchers: []Matcher{eq(0, "c")}}), caps, []Code{CodeDuplicateID}},
		{"not a duplicate", mk(str8, Instance{ID: 1, Action: ActionLog, Matchers: []Matcher{eq(0, "a")}}, Instance{ID: 2, Action: ActionLog, Matchers: []Matcher{eq(0, "b")}}), caps, nil},
		{"contradictory", mk(str8, Instance{ID: 1, Action: ActionLog, Matchers: []Matcher{eq(0, "a")}}, Instance{ID: 2, Action: ActionBlock, Matchers: []Matcher{eq(0, "a")}}), caps, []Code{CodeContradictory}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := Check(tt.f, tt.caps, Options{})
			var got []Code
			for _, p := range ps {
				got = append(got, p.Code)
			}
			require.Equal(t, tt.want, got, "%v", ps)
		})
	}
}

func TestValidateBoundsReport(t *testing.T) {
	caps := loadCaps(t, "7.11")
	f := &ChannelFile{Channel: 1, ContentVersion: 1, TemplateType: 7, TemplateVersion: 1}
	for _, in := range caps.Template(7).Inputs {
		f.Fields = append(f.Fields, in.Type)
	}
	f.Fields = append(f.Fields, FieldString)
	for i := range 50 {
		f.Instances = append(f.Instances, Instance{ID: uint32(i), Action: ActionLog, Matchers: []Matcher{{Field: 20, Kind: MatchEqualString, Str: strings.Repeat("x", i)}}})
	}
	ps := Check(f, caps, Options{MaxProblems: 10})
	require.Len(t, ps, 11)
	last := ps[len(ps)-1]
	require.Equal(t, CodeMoreProblems, last.Code)
	require.Equal(t, SeverityError, last.Severity)
	require.Contains(t, last.Message, "41 more problems")
}

func TestParseCapabilitiesErrors(t *testing.T) {
	tests := map[string]string{
		"wrong format":   `{"format":"x","sensor":"1","template_types":[]}`,
		"no sensor":      `{"format":"ringfence-capabilities/v1","sensor":"","template_types":[]}`,
		"unknown member": `{"format":"ringfence-capabilities/v1","sensor":"1","template_types":[],"x":1}`,
		"duplicate id":   `{"format":"ringfence-capabilities/v1","sensor":"1","template_types":[{"id":1,"name":"A","versions":[1],"inputs":[{"name":"a","type":"uint"}]},{"id":1,"name":"B","versions":[1],"inputs":[{"name":"a","type":"uint"}]}]}`,
		"no inputs":      `{"format":"ringfence-capabilities/v1","sensor":"1","template_types":[{"id":1,"name":"A","versions":[1],"inputs":[]}]}`,
		"no versions":    `{"format":"ringfence-capabilities/v1","sensor":"1","template_types":[{"id":1,"name":"A","versions":[],"inputs":[{"name":"a","type":"uint"}]}]}`,
		"bad type":       `{"format":"ringfence-capabilities/v1","sensor":"1","template_types":[{"id":1,"name":"A","versions":[1],"inputs":[{"name":"a","type":"int"}]}]}`,
		"channel 0":      `{"format":"ringfence-capabilities/v1","sensor":"1","template_types":[],"channels":[0]}`,
		"channel twice":  `{"format":"ringfence-capabilities/v1","sensor":"1","template_types":[],"channels":[291,291]}`,
	}
	for name, src := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseCapabilities([]byte(src))
			require.ErrorIs(t, err, ErrCapabilities)
		})
	}
}

// TestChannelNotLoaded: a manifest that lists the channels its agent loads
// refuses content of another channel, and accepts its own.
func TestChannelNotLoaded(t *testing.T) {
	data, err := ReadFile(filepath.Join(channelDir, "good-ipc-1002.rfch"))
	require.NoError(t, err)
	caps := *loadCaps(t, "7.11")
	caps.Channels = []uint32{292, 293}
	_, ps := Validate(data, &caps, Options{})
	require.True(t, ps.HasErrors())
	require.Equal(t, CodeChannelNotLoaded, ps[0].Code)
	require.Contains(t, ps[0].Message, "channel 291 is not one sensor 7.11 loads")
	caps.Channels = append(caps.Channels, 291)
	_, ps = Validate(data, &caps, Options{})
	require.False(t, ps.HasErrors(), "%v", ps)
}

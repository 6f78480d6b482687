package validator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/ringfence/ringfence/compat"
	"github.com/ringfence/ringfence/internal/boundedio"
)

// MaxCapabilitiesSize bounds a capability manifest read from disk.
const MaxCapabilitiesSize = 1 << 20

// CapabilitiesFormat is the value of the "format" member of a manifest.
const CapabilitiesFormat = "ringfence-capabilities/v1"

// ErrCapabilities is returned (wrapped) for a capability manifest that cannot
// be used.
var ErrCapabilities = errors.New("validator: bad capability manifest")

// Capabilities describes what one installed interpreter version supplies:
// per template type, the input fields it fills in for every event, in order.
// Content may reference only those.
type Capabilities struct {
	Format        string         `json:"format"`
	Sensor        string         `json:"sensor"`
	TemplateTypes []TemplateType `json:"template_types"`
	// Channels, when set, are the content channels this agent build loads:
	// a host follows no other (ringfenced refuses to start), and content of
	// another channel fails validation (CHANNEL_NOT_LOADED). Unset: any.
	Channels []uint32 `json:"channels,omitempty"`
	// Digest is the SHA-256 (lower-case hex) of the manifest's bytes as
	// ParseCapabilities read them: hosts report it with Sensor, so that
	// two manifests that claim one version can be told apart.
	Digest string `json:"-"`
}

// LoadsChannel reports whether the agent loads content of channel ch.
func (c *Capabilities) LoadsChannel(ch uint32) bool {
	return len(c.Channels) == 0 || slices.Contains(c.Channels, ch)
}

// TemplateType is what the interpreter supplies for one template type.
type TemplateType struct {
	ID   uint16 `json:"id"`
	Name string `json:"name"`
	// Versions are the template type versions the interpreter evaluates.
	Versions []uint16 `json:"versions"`
	Inputs   []Input  `json:"inputs"`
}

// Input is one input field the interpreter supplies.
type Input struct {
	Name string    `json:"name"`
	Type FieldType `json:"type"`
}

// MarshalJSON writes the type by name.
func (t FieldType) MarshalJSON() ([]byte, error) {
	if t != FieldString && t != FieldUint {
		return nil, fmt.Errorf("validator: unknown field type %d", t)
	}
	return json.Marshal(t.String())
}

// UnmarshalJSON reads "string" or "uint".
func (t *FieldType) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("field type must be \"string\" or \"uint\": %w", err)
	}
	switch s {
	case "string":
		*t = FieldString
	case "uint":
		*t = FieldUint
	default:
		return fmt.Errorf("unknown field type %q; use \"string\" or \"uint\"", s)
	}
	return nil
}

// LoadCapabilities reads and checks a capability manifest file.
func LoadCapabilities(path string) (*Capabilities, error) {
	data, err := boundedio.ReadFile(path, MaxCapabilitiesSize)
	if err != nil {
		return nil, err
	}
	c, err := ParseCapabilities(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseCapabilities decodes and checks a capability manifest. Unknown members
// are an error: a manifest is written by the interpreter's vendor, and a typo
// that silently drops a field would make every check below it wrong.
func ParseCapabilities(data []byte) (*Capabilities, error) {
	if len(data) > MaxCapabilitiesSize {
		return nil, fmt.Errorf("%w: %d bytes; the limit is %d", ErrCapabilities, len(data), MaxCapabilitiesSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Capabilities
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCapabilities, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrCapabilities)
	}
	if c.Format != CapabilitiesFormat {
		return nil, fmt.Errorf("%w: format %q; want %q", ErrCapabilities, c.Format, CapabilitiesFormat)
	}
	if err := compat.CheckSensor(c.Sensor); err != nil {
		return nil, fmt.Errorf("%w: \"sensor\" (the interpreter version): %v", ErrCapabilities, err)
	}
	for i, ch := range c.Channels {
		if ch == 0 || slices.Contains(c.Channels[:i], ch) {
			return nil, fmt.Errorf("%w: \"channels\": %d is 0 or listed twice", ErrCapabilities, ch)
		}
	}
	seen := map[uint16]bool{}
	for _, tt := range c.TemplateTypes {
		if seen[tt.ID] {
			return nil, fmt.Errorf("%w: template type id %d appears twice", ErrCapabilities, tt.ID)
		}
		seen[tt.ID] = true
		if tt.Name == "" || len(tt.Versions) == 0 {
			return nil, fmt.Errorf("%w: template type id %d needs a name and at least one version", ErrCapabilities, tt.ID)
		}
		if len(tt.Inputs) == 0 || len(tt.Inputs) > MaxFields {
			return nil, fmt.Errorf("%w: template type %s supplies %d inputs; must be 1..%d", ErrCapabilities, tt.Name, len(tt.Inputs), MaxFields)
		}
		for i, in := range tt.Inputs {
			if in.Type != FieldString && in.Type != FieldUint {
				return nil, fmt.Errorf("%w: template type %s, input %d (%q): \"type\" must be \"string\" or \"uint\"", ErrCapabilities, tt.Name, i+1, in.Name)
			}
		}
	}
	sum := sha256.Sum256(data)
	c.Digest = hex.EncodeToString(sum[:])
	return &c, nil
}

// Template returns the template type with the given id, or nil.
func (c *Capabilities) Template(id uint16) *TemplateType {
	for i := range c.TemplateTypes {
		if c.TemplateTypes[i].ID == id {
			return &c.TemplateTypes[i]
		}
	}
	return nil
}

// Supports reports whether the interpreter evaluates version v of the type.
func (t *TemplateType) Supports(v uint16) bool {
	for _, s := range t.Versions {
		if s == v {
			return true
		}
	}
	return false
}

func (t *TemplateType) versionList() string {
	var b []byte
	for i, v := range t.Versions {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendUint(b, uint64(v), 10)
	}
	return string(b)
}

// ReadFile reads a channel file from disk. A file larger than MaxFileSize
// cannot be a channel file: ReadFile refuses it, reading no more than
// MaxFileSize+1 bytes, with an error that wraps boundedio.ErrTooLarge and
// names the limit.
func ReadFile(path string) ([]byte, error) {
	data, err := boundedio.ReadFile(path, MaxFileSize)
	if errors.Is(err, boundedio.ErrTooLarge) {
		return nil, fmt.Errorf("validator: %w (%d MiB), the most a channel file can be; check that it is the right file", err, MaxFileSize>>20)
	}
	return data, err
}

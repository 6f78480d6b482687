package validator

// Format constants of channel-file format v1. docs/channel-file-format.md is
// the normative description; these names are referenced there.
const (
	// Magic opens every channel file.
	Magic = "RFCH"
	// FormatVersion is the only format version this package reads and writes.
	FormatVersion = 1
	// HeaderSize is the size of the fixed header.
	HeaderSize = 32
	// TrailerSize is the size of the SHA-256 trailer.
	TrailerSize = 32
)

// Limits bound every length and count in a channel file. A parser that trusts
// a count before checking it against the bytes that remain is how
// allocations explode; these are checked before anything is allocated.
const (
	// MaxFileSize bounds a whole channel file.
	MaxFileSize = 32 << 20
	// MaxFields bounds the declared field count of a template type.
	MaxFields = 64
	// MaxInstances bounds the number of template instances.
	MaxInstances = 1 << 20
	// MaxStringLen bounds the operand of an equals or prefix matcher.
	MaxStringLen = 1024
	// MaxPatternLen bounds the text of a pattern matcher.
	MaxPatternLen = 256
	// MaxPatternStars bounds the '*' wildcards in one pattern. The
	// interpreter matches patterns by backtracking, whose cost grows as
	// (input length)^(stars); three stars over the sensor's 256-byte inputs
	// stay under a few million steps per pattern and event (a file of many
	// such instances multiplies that: preflight's time limit is the bound
	// on the whole).
	MaxPatternStars = 3
)

// FieldType is the type of one input field of a template type.
type FieldType uint8

// Field types.
const (
	FieldString FieldType = 1
	FieldUint   FieldType = 2
)

func (t FieldType) String() string {
	switch t {
	case FieldString:
		return "string"
	case FieldUint:
		return "uint"
	}
	return "unknown"
}

// MatcherKind is the kind of one matcher of a template instance.
type MatcherKind uint8

// Matcher kinds. The wire value is the constant's value.
const (
	// MatchAny (wildcard) matches every value; the interpreter does not read
	// the input at all.
	MatchAny MatcherKind = 0
	// MatchEqualString matches a string input equal to Str.
	MatchEqualString MatcherKind = 1
	// MatchEqualUint matches a uint input equal to Lo.
	MatchEqualUint MatcherKind = 2
	// MatchPrefix matches a string input that starts with Str.
	MatchPrefix MatcherKind = 3
	// MatchRange matches a uint input in [Lo, Hi].
	MatchRange MatcherKind = 4
	// MatchPattern matches a string input against a glob of literal bytes,
	// '?' (any one byte) and '*' (any run of bytes).
	MatchPattern MatcherKind = 5

	maxMatcherKind = MatchPattern
)

func (k MatcherKind) String() string {
	switch k {
	case MatchAny:
		return "wildcard"
	case MatchEqualString:
		return "equals-string"
	case MatchEqualUint:
		return "equals-uint"
	case MatchPrefix:
		return "prefix"
	case MatchRange:
		return "range"
	case MatchPattern:
		return "pattern"
	}
	return "unknown"
}

// OperandType reports the field type the matcher kind applies to, or 0 for
// the wildcard, which applies to any.
func (k MatcherKind) OperandType() FieldType {
	switch k {
	case MatchEqualString, MatchPrefix, MatchPattern:
		return FieldString
	case MatchEqualUint, MatchRange:
		return FieldUint
	}
	return 0
}

// Matcher is one condition of a template instance on one input field.
type Matcher struct {
	// Field is the zero-based index of the input field the matcher reads.
	Field uint16
	Kind  MatcherKind
	// Str is the operand of equals-string, prefix and pattern.
	Str string
	// Lo is the operand of equals-uint and the lower bound of range.
	Lo uint64
	// Hi is the upper bound of range (inclusive).
	Hi uint64
}

// Action is what the agent does when an instance matches.
type Action uint8

// Actions.
const (
	ActionLog   Action = 1
	ActionAlert Action = 2
	ActionBlock Action = 3

	maxAction = ActionBlock
)

func (a Action) String() string {
	switch a {
	case ActionLog:
		return "log"
	case ActionAlert:
		return "alert"
	case ActionBlock:
		return "block"
	}
	return "unknown"
}

// Instance is one template instance: a detection that matches when every one
// of its matchers matches.
//
// On the wire an instance carries one matcher per declared field. In memory it
// keeps only the non-wildcard ones, in ascending field order: a wildcard reads
// nothing, and a file of mostly wildcards would otherwise cost tens of bytes
// per field per instance to hold.
type Instance struct {
	ID     uint32
	Action Action
	// Matchers are the instance's non-wildcard matchers, strictly ascending
	// by Field.
	Matchers []Matcher

	// raw is the instance's matcher bytes as parsed, used by Validate to
	// find duplicates without re-encoding. Empty for instances built in code.
	raw string
}

// ChannelFile is a parsed channel file.
type ChannelFile struct {
	Channel         uint32
	ContentVersion  uint32
	TemplateType    uint16
	TemplateVersion uint16
	// Fields are the declared input field types; len(Fields) is the
	// declared field count.
	Fields    []FieldType
	Instances []Instance
	// Checksum is the SHA-256 trailer as read (Parse) or as last encoded.
	Checksum [32]byte
}

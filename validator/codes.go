package validator

// Code is the stable identifier of a problem found in a channel file. Codes
// never change meaning; tools and telemetry match on them.
type Code string

// Structural codes, returned by Parse (and so by Validate).
const (
	CodeTruncated         Code = "TRUNCATED"          // the file ends before its header, body or trailer does
	CodeTooLarge          Code = "TOO_LARGE"          // the file is larger than MaxFileSize
	CodeBadMagic          Code = "BAD_MAGIC"          // not a channel file
	CodeUnsupportedFormat Code = "UNSUPPORTED_FORMAT" // a format version this build cannot read
	CodeChecksum          Code = "CHECKSUM"           // the SHA-256 trailer does not match the content
	CodeCountLimit        Code = "COUNT_LIMIT"        // a field or instance count is zero or past its limit
	CodeLengthLimit       Code = "LENGTH_LIMIT"       // a string or pattern is longer than its limit
	CodeBadFieldType      Code = "BAD_FIELD_TYPE"     // a declared field type is unknown
	CodeBadMatcher        Code = "BAD_MATCHER"        // a matcher kind is unknown
	CodeBadAction         Code = "BAD_ACTION"         // an instance action is unknown
	CodeTrailingData      Code = "TRAILING_DATA"      // bytes after the last instance or the trailer
	CodeNonCanonical      Code = "NON_CANONICAL"      // reserved bits set: the file has a second encoding
)

// Semantic codes, found by Validate on a well-formed file.
const (
	CodeUnknownTemplate     Code = "UNKNOWN_TEMPLATE_TYPE"  // the sensor has no such template type
	CodeChannelNotLoaded    Code = "CHANNEL_NOT_LOADED"     // the agent's manifest lists the channels it loads, and not this one
	CodeTemplateVersion     Code = "TEMPLATE_VERSION"       // the sensor does not support this template type version
	CodeFieldCountMismatch  Code = "FIELD_COUNT_MISMATCH"   // declared field count differs from what the sensor supplies
	CodeFieldNotSupplied    Code = "FIELD_NOT_SUPPLIED"     // a matcher reads a field the sensor does not supply (Channel File 291)
	CodeFieldTypeMismatch   Code = "FIELD_TYPE_MISMATCH"    // a declared field type differs from the type the sensor supplies
	CodeMatcherType         Code = "MATCHER_TYPE"           // a matcher's kind does not fit its field's type
	CodeBadRange            Code = "BAD_RANGE"              // a range whose low bound is above its high bound never matches
	CodePatternTooComplex   Code = "PATTERN_TOO_COMPLEX"    // a pattern has more wildcards than the interpreter bounds
	CodeMatchesEverything   Code = "MATCHES_EVERYTHING"     // an instance with only wildcards (or empty prefixes) fires on every event
	CodeDuplicateID         Code = "DUPLICATE_ID"           // two instances share an id
	CodeDuplicateInstance   Code = "DUPLICATE_INSTANCE"     // two instances have the same matchers and action
	CodeContradictory       Code = "CONTRADICTORY_INSTANCE" // two instances have the same matchers and different actions
	CodeVersionNotMonotonic Code = "VERSION_NOT_MONOTONIC"  // not newer than the installed content of the channel
)

// Preflight codes, found by Preflight.
const (
	CodePreflightCrash   Code = "PREFLIGHT_CRASH"   // the interpreter crashed
	CodePreflightTimeout Code = "PREFLIGHT_TIMEOUT" // the interpreter did not finish within the time limit
	CodePreflightMemory  Code = "PREFLIGHT_MEMORY"  // the interpreter ran out of its memory limit
	CodePreflightFailed  Code = "PREFLIGHT_FAILED"  // the preflight command failed for another reason
)

// Package compat is the compatibility constraint of a content version: the
// sensor (interpreter) versions it may run on, as the publisher found by
// checking it against each version the vendor supports. It is the only
// owner of that contract.
//
// The constraint travels signed, by the content role, in the content
// target's TUF custom metadata (docs/repository.md):
//
//	"custom": {"ringfence": {"sensors": ["7.12"], "excluded": {"7.11": "FIELD_NOT_SUPPLIED"}}}
//
// and, copied by the rollout server, in the stages of the signed rollout
// plan that give the version (rollout.Stage.Sensors). The publisher writes
// it (ringfence-server publish); the rollout server keeps incompatible
// hosts out of a rollout's stages and gate; a host refuses content whose
// constraint excludes its installed sensor, whatever a plan says.
package compat

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"
)

// Bounds of a constraint, checked wherever one is read.
const (
	// MaxCustom bounds the custom metadata of one target that Parse reads.
	MaxCustom = 64 << 10
	// MaxSensors bounds the sensor versions a constraint names, allowed
	// and excluded alike.
	MaxSensors = 64
	// MaxSensorLen bounds one sensor version string.
	MaxSensorLen = 64
	// MaxWhyLen bounds the reason given for an excluded version.
	MaxWhyLen = 256
)

// Key is the member of a target's custom metadata that holds the
// constraint; other members belong to others and are ignored.
const Key = "ringfence"

// ErrConstraint is returned (wrapped) for custom metadata whose constraint
// cannot be used. A host refuses such content: a signed constraint it
// cannot read is one it cannot honour.
var ErrConstraint = errors.New("compat: bad compatibility constraint")

// Constraint is the sensor versions a content version may run on.
type Constraint struct {
	// Sensors are the versions the content may run on, sorted; empty: any
	// (it passed on every version it was checked against).
	Sensors []string `json:"sensors,omitempty"`
	// Excluded are the versions it was checked against and refused by,
	// with the first reason (a problem code, or "preflight"), for people
	// to read. Hosts decide by Sensors alone.
	Excluded map[string]string `json:"excluded,omitempty"`
}

// Any reports whether the content may run on every sensor version.
func (c Constraint) Any() bool { return len(c.Sensors) == 0 }

// Allows reports whether content with this constraint may run on sensor.
// A constrained version never allows an unknown ("") sensor.
func (c Constraint) Allows(sensor string) bool {
	return c.Any() || sensor != "" && slices.Contains(c.Sensors, sensor)
}

// Within reports whether every sensor that c allows, other allows too: a
// plan's stage (c) may narrow its content's constraint (other), never
// widen it.
func (c Constraint) Within(other Constraint) bool {
	if other.Any() {
		return true
	}
	if c.Any() {
		return false
	}
	for _, s := range c.Sensors {
		if !other.Allows(s) {
			return false
		}
	}
	return true
}

// String describes the constraint for people, versions in Compare's
// order: "any sensor", "sensor 7.12 only", or "sensors 7.9, 7.12 only;
// excludes 7.8 (FIELD_NOT_SUPPLIED), 7.10 (preflight)".
func (c Constraint) String() string {
	if c.Any() {
		return "any sensor"
	}
	var b strings.Builder
	b.WriteString("sensor")
	if len(c.Sensors) > 1 {
		b.WriteString("s")
	}
	b.WriteString(" " + strings.Join(slices.SortedFunc(slices.Values(c.Sensors), Compare), ", ") + " only")
	for i, s := range slices.SortedFunc(maps.Keys(c.Excluded), Compare) {
		if i == 0 {
			b.WriteString("; excludes ")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%s)", s, c.Excluded[s])
	}
	return b.String()
}

// Compare orders sensor versions as people read them: runs of digits by
// their value (7.9 before 7.11, 7.12 before 7.12.1), the rest as text.
func Compare(a, b string) int {
	for a != "" && b != "" {
		ra, resta := leadingRun(a)
		rb, restb := leadingRun(b)
		if c := compareRuns(ra, rb); c != 0 {
			return c
		}
		a, b = resta, restb
	}
	return cmp.Compare(len(a), len(b))
}

// leadingRun splits s after its first run of digits or of other bytes.
func leadingRun(s string) (run, rest string) {
	digit := func(c byte) bool { return c >= '0' && c <= '9' }
	i := 1
	for i < len(s) && digit(s[i]) == digit(s[0]) {
		i++
	}
	return s[:i], s[i:]
}

func compareRuns(a, b string) int {
	if a[0] >= '0' && a[0] <= '9' && b[0] >= '0' && b[0] <= '9' {
		ta, tb := strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if c := cmp.Compare(len(ta), len(tb)); c != 0 {
			return c
		}
		if c := strings.Compare(ta, tb); c != 0 {
			return c
		}
	}
	return strings.Compare(a, b)
}

// CheckSensor reports whether s can name a sensor version: 1 to
// MaxSensorLen bytes of letters, digits and ".-+_".
func CheckSensor(s string) error {
	if s == "" || len(s) > MaxSensorLen {
		return fmt.Errorf("sensor version %.80q: must be 1 to %d bytes", s, MaxSensorLen)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '+' || r == '_') {
			return fmt.Errorf("sensor version %.80q: only letters, digits and .-+_ may appear", s)
		}
	}
	return nil
}

// Check reports the first thing wrong with c: too many versions, versions
// excluded but none allowed, a bad version string, one listed twice, one
// both allowed and excluded, a reason too long or one that does not print
// (every character of a constraint that passes prints in a terminal).
func (c Constraint) Check() error {
	if len(c.Sensors)+len(c.Excluded) > MaxSensors {
		return fmt.Errorf("%w: %d sensor versions; the limit is %d", ErrConstraint, len(c.Sensors)+len(c.Excluded), MaxSensors)
	}
	if c.Any() && len(c.Excluded) > 0 {
		return fmt.Errorf("%w: it excludes sensor versions but allows none (content no sensor runs is not published)", ErrConstraint)
	}
	for i, s := range c.Sensors {
		if err := CheckSensor(s); err != nil {
			return fmt.Errorf("%w: sensors: %v", ErrConstraint, err)
		}
		if slices.Contains(c.Sensors[:i], s) {
			return fmt.Errorf("%w: sensors: %s is listed twice", ErrConstraint, s)
		}
	}
	for s, why := range c.Excluded {
		if err := CheckSensor(s); err != nil {
			return fmt.Errorf("%w: excluded: %v", ErrConstraint, err)
		}
		if slices.Contains(c.Sensors, s) {
			return fmt.Errorf("%w: %s is both allowed and excluded", ErrConstraint, s)
		}
		if len(why) > MaxWhyLen {
			return fmt.Errorf("%w: excluded: the reason for %s is %d bytes; the limit is %d", ErrConstraint, s, len(why), MaxWhyLen)
		}
		if strings.IndexFunc(why, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			return fmt.Errorf("%w: excluded: the reason for %s holds a character that does not print", ErrConstraint, s)
		}
	}
	return nil
}

// Custom returns c as a target's custom metadata ({"ringfence": c}), or nil
// when c allows any sensor and excludes none: unconstrained content carries
// no custom metadata at all.
func (c Constraint) Custom() (json.RawMessage, error) {
	if c.Any() && len(c.Excluded) == 0 {
		return nil, nil
	}
	if err := c.Check(); err != nil {
		return nil, err
	}
	c.Sensors = slices.Sorted(slices.Values(c.Sensors))
	return json.Marshal(map[string]Constraint{Key: c})
}

// Parse reads the constraint from a target's custom metadata (nil or
// empty: none, any sensor). Members other than Key are ignored; within it,
// unknown members are an error, as is anything beyond the bounds.
func Parse(custom []byte) (Constraint, error) {
	if len(bytes.TrimSpace(custom)) == 0 || bytes.Equal(bytes.TrimSpace(custom), []byte("null")) {
		return Constraint{}, nil
	}
	if len(custom) > MaxCustom {
		return Constraint{}, fmt.Errorf("%w: custom metadata of %d bytes; the limit is %d", ErrConstraint, len(custom), MaxCustom)
	}
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(custom, &outer); err != nil {
		return Constraint{}, fmt.Errorf("%w: custom metadata is not a JSON object: %v", ErrConstraint, err)
	}
	raw, ok := outer[Key]
	if !ok {
		return Constraint{}, nil
	}
	var c Constraint
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Constraint{}, fmt.Errorf("%w: %v", ErrConstraint, err)
	}
	if err := c.Check(); err != nil {
		return Constraint{}, err
	}
	return c, nil
}

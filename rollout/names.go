package rollout

import (
	"fmt"
	"regexp"
	"strconv"
)

// The target names hosts and the repository agree on.

// ContentTarget is the target name of a channel file.
func ContentTarget(channel, version uint32) string {
	return fmt.Sprintf("channels/%d/%d.rfch", channel, version)
}

// RolloutTarget is the target name of a channel's rollout plan.
func RolloutTarget(channel uint32) string { return fmt.Sprintf("rollout/%d.json", channel) }

var contentTargetRE = regexp.MustCompile(`^channels/([0-9]+)/([0-9]+)\.rfch$`)

// ParseContentTarget returns the channel and version a content target names.
func ParseContentTarget(name string) (channel, version uint32, ok bool) {
	m := contentTargetRE.FindStringSubmatch(name)
	if m == nil {
		return 0, 0, false
	}
	c, err1 := strconv.ParseUint(m[1], 10, 32)
	v, err2 := strconv.ParseUint(m[2], 10, 32)
	return uint32(c), uint32(v), err1 == nil && err2 == nil
}

// BinaryTarget is the target name of a ringfenced binary for a platform.
func BinaryTarget(goos, goarch, version string) string {
	return fmt.Sprintf("ringfenced/%s-%s/%s", goos, goarch, version)
}

var binaryTargetRE = regexp.MustCompile(`^ringfenced/([a-z0-9]+)-([a-z0-9]+)/([0-9][0-9A-Za-z.+-]{0,63})$`)

// ParseBinaryTarget returns the platform and version a binary target names.
func ParseBinaryTarget(name string) (goos, goarch, version string, ok bool) {
	m := binaryTargetRE.FindStringSubmatch(name)
	if m == nil {
		return "", "", "", false
	}
	return m[1], m[2], m[3], true
}

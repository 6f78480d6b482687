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

// AgentTarget is the target name of a ringfenced binary for a platform.
func AgentTarget(goos, goarch, version string) string {
	return fmt.Sprintf("agent/%s-%s/%s", goos, goarch, version)
}

var agentTargetRE = regexp.MustCompile(`^agent/([a-z0-9]+)-([a-z0-9]+)/([0-9][0-9A-Za-z.+-]{0,63})$`)

// ParseAgentTarget returns the platform and version an agent target names.
func ParseAgentTarget(name string) (goos, goarch, version string, ok bool) {
	m := agentTargetRE.FindStringSubmatch(name)
	if m == nil {
		return "", "", "", false
	}
	return m[1], m[2], m[3], true
}

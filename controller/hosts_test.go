package controller_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/rollout"
)

// storedHosts are hosts as a store keeps them (encoding/json of Host, as
// written before the controller kept its own records).
var storedHosts = []string{
	`{"versions":{"291":1001,"4000000000":4000000001,"7":3},"tracks":[{"channel":291,"to":1002,"installed":"2026-12-01T10:00:00Z","healthy":"2026-12-01T10:05:00Z"},{"channel":7,"to":3,"failed":"2026-12-01T11:00:00+01:00","failure":"reverted: boot loop","control_failed":"2026-12-01T09:00:00Z"}],"last_seen":"2026-12-01T10:06:00.123456789Z","bucket":%d,"id":"h-full","fleet":"lab","tags":["canary","eu-west"],"admitted":"2026-11-01T08:00:00Z","admitted_by":"token:t-1","last_seq":42,"sensor":"7.12","manifest":"sha256:ab"}`,
	`{"bucket":%d,"id":"h-bare","admitted":"0001-01-01T00:00:00Z"}`,
	`{"versions":{"291":1001},"last_seen":"2026-12-01T10:06:00Z","bucket":%d,"id":"h-one","admitted":"2026-11-01T08:00:00Z","admitted_by":"alice"}`,
}

// TestStoredHostsRoundTrip: hosts a store kept load into the controller
// and come back (Host, HostList, Changes) encoding byte for byte as they
// were stored, and equal to what was loaded.
func TestStoredHostsRoundTrip(t *testing.T) {
	var hosts []*controller.Host
	var want []string
	for _, s := range storedHosts {
		var probe struct{ ID string }
		require.NoError(t, json.Unmarshal([]byte(fmt.Sprintf(s, 0)), &probe))
		s = fmt.Sprintf(s, rollout.Bucket(probe.ID))
		var h controller.Host
		require.NoError(t, json.Unmarshal([]byte(s), &h))
		hosts = append(hosts, &h)
		want = append(want, s)
	}
	loaded := make([]controller.Host, len(hosts))
	for i, h := range hosts {
		loaded[i] = *h
	}
	c := controller.New(hosts, nil)
	for i, h := range c.HostList() {
		require.Equal(t, &loaded[i], h)
		b, err := json.Marshal(h)
		require.NoError(t, err)
		require.Equal(t, want[i], string(b))
		got, ok := c.Host(h.ID)
		require.True(t, ok)
		require.Equal(t, &loaded[i], got)
	}
	// A change writes the host as it was, but for what changed.
	require.NoError(t, c.SetTags("h-one", []string{"x"}))
	ch := c.TakeChanges()
	require.Len(t, ch.Hosts, 1)
	b, err := json.Marshal(ch.Hosts[0])
	require.NoError(t, err)
	require.Equal(t, strings.Replace(want[2], `"admitted":`, `"tags":["x"],"admitted":`, 1), string(b))
}

// TestHostsAreCopies: a Host the controller returns is the caller's: what
// the caller does to it, and what the fleet does later, leave the other
// as it is.
func TestHostsAreCopies(t *testing.T) {
	f := newFleet(t, 5, 2, 1001)
	h, ok := f.c.Host(f.ids[0])
	require.True(t, ok)
	h.Versions[291] = 7
	h.Tags = append(h.Tags, "forged")
	h.LastSeq = 1 << 60
	again, _ := f.c.Host(f.ids[0])
	require.Equal(t, uint32(1001), again.Versions[291])
	require.Empty(t, again.Tags)
	require.Less(t, again.LastSeq, uint64(1<<60))

	f.now = f.now.Add(time.Minute)
	f.report(f.ids[0], 1002)
	require.Equal(t, uint32(1001), again.Versions[291], "a copy does not follow the fleet")
	now, _ := f.c.Host(f.ids[0])
	require.Equal(t, uint32(1002), now.Versions[291])
}

// TestHostsAfter: pages of the fleet, by id, are the whole fleet once,
// through removals (the last host takes a removed one's place in the
// controller) and admissions.
func TestHostsAfter(t *testing.T) {
	f := newFleet(t, 57, 3, 1001)
	for _, i := range []int{0, 13, 56, 30} {
		require.NoError(t, f.c.Remove(f.ids[i]))
	}
	for _, id := range []string{"a-first", "z-last", "h-0013"} {
		_, err := f.c.Admit(id, controller.Admission{By: "test"}, f.now)
		require.NoError(t, err)
	}
	f.c.TakeChanges()
	var all []string
	for _, h := range f.c.HostList() {
		all = append(all, h.ID)
		require.True(t, f.c.Known(h.ID))
	}
	slices.Sort(all)
	require.Len(t, all, 57-4+3)
	require.False(t, f.c.Known(f.ids[56]))
	require.True(t, f.c.Known("h-0013"))
	for _, limit := range []int{1, 7, 100} {
		var got []string
		for after := ""; ; {
			page := f.c.HostsAfter(after, limit)
			for _, h := range page {
				got = append(got, h.ID)
			}
			if len(page) < limit {
				break
			}
			after = page[len(page)-1].ID
		}
		require.Equal(t, all, got, "limit %d", limit)
	}
	require.Empty(t, f.c.HostsAfter("", 0))
}

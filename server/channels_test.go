package server_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/tufrepo"
	"github.com/ringfence/ringfence/validator"
	"github.com/ringfence/ringfence/wire"
)

// batch2 is a batch of a host that follows channels 291 and 292 (one
// identity for both): a heartbeat per channel, then evs.
func (h *host) batch2(v291, v292 uint32, evs ...wire.Event) wire.Batch {
	evs = append([]wire.Event{{Kind: wire.EventHeartbeat, Channel: 291, Version: v291}, {Kind: wire.EventHeartbeat, Channel: 292, Version: v292}}, evs...)
	for i := range evs {
		h.seq++
		evs[i].Seq = h.seq
		if evs[i].ID == "" {
			evs[i].ID = fmt.Sprintf("e%d", h.seq)
		}
	}
	b := wire.Batch{Format: wire.Format, HostID: h.id.HostID(), PublicKey: base64.StdEncoding.EncodeToString(h.id.PublicKey()),
		SentAt: time.Now().UTC(), HostInfo: wire.HostInfo{Versions: map[string]uint32{"291": v291, "292": v292}}, Events: evs}
	return b
}

// TestTwoChannelsAtOnce: two rollouts run at once on the same hosts, one per
// channel. A canary's crash on 291's new version halts and rolls back 291
// only; 292's rollout goes on. The fleet counts hosts, not channels.
func TestTwoChannelsAtOnce(t *testing.T) {
	l := newLab(t, server.Options{CanaryTags: []string{"canary"}})
	// Channel 292: version 2001, made from good-ipc-1001.
	require.NoError(t, tufrepo.Update(l.repo, l.keys, l.clock, func(r *tufrepo.Repo) error {
		f, err := validator.Parse(testfiles.Channel(t, "good-ipc-1001"))
		if err != nil {
			return err
		}
		f.Channel, f.ContentVersion = 292, 2001
		data, err := validator.Encode(f)
		if err != nil {
			return err
		}
		_, err = r.Publish(292, 2001, data)
		return err
	}))
	canary, other := newHost(t, "canary"), newHost(t, "")
	l.admit(t, canary, other)
	for _, h := range []*host{canary, other} {
		code, ans := l.post(t, h, h.batch2(1001, 0))
		require.Equal(t, http.StatusOK, code, ans)
	}
	ctx := context.Background()
	for _, req := range []server.StartRequest{
		{ActionRequest: server.ActionRequest{Who: "alice", Why: "weekly content"}, Channel: 291, Version: 1002},
		{ActionRequest: server.ActionRequest{Who: "alice", Why: "a new channel"}, Channel: 292, Version: 2001},
	} {
		_, _, err := l.client().Start(ctx, req)
		require.NoError(t, err, "channel %d", req.Channel)
	}
	l.clock.Advance(time.Minute)
	code, ans := l.post(t, canary, canary.batch2(1001, 2001,
		wire.Event{Kind: wire.EventInstalled, Channel: 292, Version: 2001},
		wire.Event{Kind: wire.EventHealthy, Channel: 292, Version: 2001},
		wire.Event{Kind: wire.EventInstalled, Channel: 291, Version: 1002},
		wire.Event{ID: "reverted-291-1002-load-crash", Kind: wire.EventReverted, Channel: 291, Version: 1002, Reason: "load-crash", Critical: true}))
	require.Equal(t, http.StatusOK, code, ans)

	vs, err := l.client().Rollouts(ctx)
	require.NoError(t, err)
	require.Len(t, vs, 2)
	byChannel := map[uint32]server.View{}
	for _, v := range vs {
		byChannel[v.Channel] = v
	}
	require.Equal(t, controller.StateRolledBack, byChannel[291].State, "the crash on 291 halts 291")
	require.Equal(t, controller.StateRunning, byChannel[292].State, "and not 292")
	require.Equal(t, int64(1), byChannel[291].Gate.TreatedFailures)
	require.Equal(t, int64(0), byChannel[292].Gate.TreatedFailures)
	require.Equal(t, 2, l.srv.Hosts("", "", 10).Fleet, "two hosts, whatever channels they follow")
	require.Equal(t, map[string]int{"2001": 1, "none": 1}, byChannel[292].Versions, "hosts per version of 292, by host")
	require.Equal(t, map[string]int{"1001": 2}, byChannel[291].Versions)
	p := l.plan(t)
	require.Equal(t, []uint32{1002}, p.Deny, "291's plan denies 1002")
}

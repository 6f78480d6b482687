package admission_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/wire"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func TestTokens(t *testing.T) {
	g := admission.New(nil, nil)
	_, _, err := g.CreateToken(admission.TokenSpec{Fleet: "acme"}, "alice", t0)
	require.ErrorContains(t, err, "lifetime")
	secret, tok, err := g.CreateToken(admission.TokenSpec{Fleet: "acme", Tags: []string{"canary"}, TTL: time.Hour, MaxUses: 2}, "alice", t0)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(secret, admission.TokenPrefix+tok.ID+"_"))
	require.NotContains(t, tok.Hash, secret[len(admission.TokenPrefix)+len(tok.ID)+1:], "only the hash is kept")

	for _, tc := range []struct {
		name, secret string
		at           time.Time
		want         string
	}{
		{"unknown id", admission.TokenPrefix + "000000000000_x", t0, "unknown token"},
		{"right id, wrong secret", admission.TokenPrefix + tok.ID + "_wrong", t0, "unknown token"},
		{"no prefix", strings.TrimPrefix(secret, admission.TokenPrefix), t0, "unknown token"},
		{"expired", secret, t0.Add(time.Hour), "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := g.Redeem(tc.secret, tc.at)
			require.ErrorIs(t, err, admission.ErrToken)
			require.ErrorContains(t, err, tc.want)
		})
	}
	for i := range 2 {
		got, err := g.Redeem(secret, t0.Add(time.Minute))
		require.NoError(t, err)
		require.Equal(t, i+1, got.Uses)
		require.Equal(t, []string{"canary"}, got.Tags)
	}
	_, err = g.Redeem(secret, t0.Add(time.Minute))
	require.ErrorContains(t, err, "used up")

	secret2, tok2, err := g.CreateToken(admission.TokenSpec{TTL: time.Hour}, "alice", t0)
	require.NoError(t, err)
	_, err = g.RevokeToken(tok2.ID, t0)
	require.NoError(t, err)
	_, err = g.Redeem(secret2, t0)
	require.ErrorContains(t, err, "revoked")
	require.Len(t, g.Tokens(), 2)
}

// TestPendingIsBoundedAndPruned: made-up keys fill only the pending list,
// never beyond its bound; unheard ones are pruned after the TTL, and a
// pending key's batches cost a write at most once a minute.
func TestPendingIsBoundedAndPruned(t *testing.T) {
	g := admission.New(nil, nil)
	g.MaxPending, g.PendingTTL = 100, time.Hour
	for i := range 100 {
		st, err := g.Seen(fmt.Sprintf("h-%03d", i), []string{"canary"}, "", t0)
		require.NoError(t, err)
		require.Equal(t, wire.AdmissionPending, st)
	}
	g.Settle()
	_, err := g.Seen("h-overflow", nil, "", t0)
	require.ErrorIs(t, err, admission.ErrPendingFull)
	require.Equal(t, 100, g.PendingCount())

	_, err = g.Seen("h-000", nil, "", t0.Add(30*time.Second))
	require.NoError(t, err)
	require.True(t, g.Changes().Empty(), "a refresh within a minute writes nothing")
	_, err = g.Seen("h-000", nil, "", t0.Add(2*time.Hour))
	require.NoError(t, err)
	require.Len(t, g.Changes().Records, 1)
	g.Settle()

	// Past the TTL the others are pruned when room is needed.
	st, err := g.Seen("h-new", nil, "", t0.Add(2*time.Hour))
	require.NoError(t, err)
	require.Equal(t, wire.AdmissionPending, st)
	require.Equal(t, 2, g.PendingCount(), "h-000 (heard again) and h-new")
	require.Len(t, g.Changes().DeletedRecords, 99)
}

func TestDecisionsAndUndo(t *testing.T) {
	g := admission.New(nil, nil)
	_, err := g.Seen("h-a", nil, "", t0)
	require.NoError(t, err)
	g.Settle()

	r, err := g.Reject("h-a", "bob", "not ours", t0)
	require.NoError(t, err)
	require.Equal(t, wire.AdmissionRejected, r.State)
	require.Equal(t, 0, g.PendingCount())
	g.Undo()
	r, ok := g.Record("h-a")
	require.True(t, ok)
	require.Equal(t, wire.AdmissionPending, r.State, "undo puts the pending record back")
	require.Equal(t, 1, g.PendingCount())

	g.Admitted("h-a")
	require.Equal(t, 0, g.PendingCount())
	require.Equal(t, []string{"h-a"}, g.Changes().DeletedRecords)
	g.Settle()
	d := g.Decommissioned("h-a", "acme", "bob", "stolen laptop", t0)
	require.Equal(t, wire.AdmissionDecommissioned, d.State)
	_, err = g.Reject("h-a", "bob", "x", t0)
	require.ErrorIs(t, err, admission.ErrState)
	st, err := g.Seen("h-a", nil, "", t0)
	require.NoError(t, err)
	require.Equal(t, wire.AdmissionDecommissioned, st, "a decommissioned key stays refused")
}

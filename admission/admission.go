// Package admission decides who may join the fleet. A host's key is
// self-made, so a verified signature proves only that the sender holds the
// key; what a host reports counts once the fleet admitted it:
//
//   - by an enrolment token the vendor issued (scoped to a fleet, a
//     customer, and carrying the tags its hosts get), presented with the
//     host's first batches: the host is admitted at once;
//   - or by an operator, who accepts a pending key, or a key or host id
//     given in advance (pre-registration).
//
// Keys the server has seen without a valid token wait as pending: bounded
// apart from admitted hosts (MaxPending), pruned when unheard for
// PendingTTL, and counting toward nothing. An operator may reject a key or
// decommission an admitted host; either key is then refused.
//
// The Registry holds tokens and every key not in the fleet (admitted hosts
// live in the rollout controller). Like the controller it is pure logic
// with tentative changes: Changes, Settle, Undo. Fleet is the tenant a host
// belongs to; rollouts do not yet scope by it, but every record carries it
// so a per-customer scope can.
package admission

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ringfence/ringfence/wire"
)

// Defaults and bounds.
const (
	DefaultMaxPending = 10_000
	DefaultPendingTTL = 7 * 24 * time.Hour
	// MaxTokens bounds the enrolment tokens kept (revoked and expired ones
	// included, until removed).
	MaxTokens = 10_000
	// MaxWhy bounds the free text recorded with a decision.
	MaxWhy = 1024
	// seenEvery is how stale a pending key's last-seen time may get before
	// a batch refreshes it (and costs a write).
	seenEvery = time.Minute
)

// Errors of the registry.
var (
	// ErrPendingFull: MaxPending keys are waiting; a new one is refused
	// until an operator decides or old ones are pruned.
	ErrPendingFull = errors.New("admission: the pending list is full")
	// ErrToken: the enrolment token is unknown, expired, used up or
	// revoked.
	ErrToken = errors.New("admission: enrolment token not valid")
	// ErrNotFound: no such token or key.
	ErrNotFound = errors.New("admission: not found")
	// ErrState: the record's state does not allow the action.
	ErrState = errors.New("admission: the key's state does not allow that")
)

// Record is a key not in the fleet: waiting, rejected or decommissioned.
type Record struct {
	ID    string         `json:"id"`
	State wire.Admission `json:"state"`
	// Requested are the tags the host asked for (shown to the operator;
	// they count for nothing).
	Requested []string  `json:"requested_tags,omitempty"`
	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	// Note says why the key is pending (a refused token, say).
	Note string `json:"note,omitempty"`
	// Decided, DecidedBy and Why record an operator's decision.
	Decided   time.Time `json:"decided,omitzero"`
	DecidedBy string    `json:"decided_by,omitempty"`
	Why       string    `json:"why,omitempty"`
	Fleet     string    `json:"fleet,omitempty"`
}

// Token is an enrolment token as the server keeps it: the hash of its
// secret, never the secret.
type Token struct {
	ID        string    `json:"id"`
	Hash      string    `json:"hash"` // hex SHA-256 of the whole token string
	Fleet     string    `json:"fleet,omitempty"`
	Tags      []string  `json:"tags,omitempty"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
	Note      string    `json:"note,omitempty"`
	Expires   time.Time `json:"expires"`
	MaxUses   int       `json:"max_uses"` // 0: unlimited until it expires
	Uses      int       `json:"uses"`
	Revoked   time.Time `json:"revoked,omitzero"`
}

// Valid reports why t cannot admit a host at now, or nil.
func (t *Token) Valid(now time.Time) error {
	switch {
	case !t.Revoked.IsZero():
		return fmt.Errorf("%w: token %s was revoked %s", ErrToken, t.ID, t.Revoked.Format(time.RFC3339))
	case !now.Before(t.Expires):
		return fmt.Errorf("%w: token %s expired %s", ErrToken, t.ID, t.Expires.Format(time.RFC3339))
	case t.MaxUses > 0 && t.Uses >= t.MaxUses:
		return fmt.Errorf("%w: token %s is used up (%d of %d hosts)", ErrToken, t.ID, t.Uses, t.MaxUses)
	}
	return nil
}

// Registry holds the enrolment tokens and the keys not in the fleet.
type Registry struct {
	// MaxPending bounds pending keys; PendingTTL prunes one unheard for
	// that long.
	MaxPending int
	PendingTTL time.Duration

	records map[string]*Record
	tokens  map[string]*Token
	pending int

	beforeRecords map[string]*Record // nil value: the key had no record
	beforeTokens  map[string]*Token
}

// New returns a registry over what a store kept.
func New(records []*Record, tokens []*Token) *Registry {
	g := &Registry{MaxPending: DefaultMaxPending, PendingTTL: DefaultPendingTTL,
		records: make(map[string]*Record, len(records)), tokens: make(map[string]*Token, len(tokens)),
		beforeRecords: map[string]*Record{}, beforeTokens: map[string]*Token{}}
	for _, r := range records {
		g.records[r.ID] = r
		if r.State == wire.AdmissionPending {
			g.pending++
		}
	}
	for _, t := range tokens {
		g.tokens[t.ID] = t
	}
	return g
}

// Changes are what a store must persist: records and tokens as they are
// now, and the ids of records deleted.
type Changes struct {
	Records        []*Record
	DeletedRecords []string
	Tokens         []*Token
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return len(c.Records) == 0 && len(c.DeletedRecords) == 0 && len(c.Tokens) == 0
}

func (g *Registry) touchRecord(id string) {
	if _, ok := g.beforeRecords[id]; ok {
		return
	}
	if r := g.records[id]; r != nil {
		c := *r
		c.Requested = slices.Clone(r.Requested)
		g.beforeRecords[id] = &c
	} else {
		g.beforeRecords[id] = nil
	}
}

func (g *Registry) touchToken(id string) {
	if _, ok := g.beforeTokens[id]; ok {
		return
	}
	if t := g.tokens[id]; t != nil {
		c := *t
		c.Tags = slices.Clone(t.Tags)
		g.beforeTokens[id] = &c
	} else {
		g.beforeTokens[id] = nil
	}
}

// Changes returns what changed since the last Settle or Undo.
func (g *Registry) Changes() Changes {
	var c Changes
	for _, id := range slices.Sorted(maps.Keys(g.beforeRecords)) {
		if r := g.records[id]; r != nil {
			c.Records = append(c.Records, r)
		} else if g.beforeRecords[id] != nil {
			c.DeletedRecords = append(c.DeletedRecords, id)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(g.beforeTokens)) {
		if t := g.tokens[id]; t != nil {
			c.Tokens = append(c.Tokens, t)
		}
	}
	return c
}

// Settle keeps the pending changes.
func (g *Registry) Settle() {
	clear(g.beforeRecords)
	clear(g.beforeTokens)
}

// Undo puts back every record and token changed since the last Settle.
func (g *Registry) Undo() {
	for id, b := range g.beforeRecords {
		if cur := g.records[id]; cur != nil && cur.State == wire.AdmissionPending {
			g.pending--
		}
		if b == nil {
			delete(g.records, id)
			continue
		}
		g.records[id] = b
		if b.State == wire.AdmissionPending {
			g.pending++
		}
	}
	for id, b := range g.beforeTokens {
		if b == nil {
			delete(g.tokens, id)
		} else {
			g.tokens[id] = b
		}
	}
	g.Settle()
}

// setRecord replaces (or with nil, deletes) id's record, keeping the
// pending count.
func (g *Registry) setRecord(id string, r *Record) {
	g.touchRecord(id)
	if cur := g.records[id]; cur != nil && cur.State == wire.AdmissionPending {
		g.pending--
	}
	if r == nil {
		delete(g.records, id)
		return
	}
	g.records[id] = r
	if r.State == wire.AdmissionPending {
		g.pending++
	}
}

// Record returns the record of a key not in the fleet.
func (g *Registry) Record(id string) (Record, bool) {
	r := g.records[id]
	if r == nil {
		return Record{}, false
	}
	return *r, true
}

// Records returns the records in a state ("" for all), by id, at most
// limit (0: all) after the id after.
func (g *Registry) Records(state wire.Admission, after string, limit int) []Record {
	var out []Record
	for _, id := range slices.Sorted(maps.Keys(g.records)) {
		r := g.records[id]
		if id <= after || state != "" && r.State != state {
			continue
		}
		out = append(out, *r)
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out
}

// PendingCount is the number of keys waiting for an operator.
func (g *Registry) PendingCount() int { return g.pending }

// Seen records a batch from a key that is not in the fleet and returns its
// standing: a known record's, or pending for a new key (ErrPendingFull
// when MaxPending keys wait). note says why it is pending.
func (g *Registry) Seen(id string, requested []string, note string, now time.Time) (wire.Admission, error) {
	if r := g.records[id]; r != nil {
		if r.State == wire.AdmissionPending && (now.Sub(r.LastSeen) >= seenEvery || r.Note != note) {
			c := *r
			c.LastSeen, c.Note = now, note
			c.Requested = boundTags(requested)
			g.setRecord(id, &c)
		}
		return r.State, nil
	}
	if g.pending >= g.MaxPending {
		g.Prune(now)
		if g.pending >= g.MaxPending {
			return "", fmt.Errorf("%w: %d keys wait for an operator ('ringfence-server hosts list --admission pending'); accept or reject some, or raise serve --max-pending", ErrPendingFull, g.pending)
		}
	}
	g.setRecord(id, &Record{ID: id, State: wire.AdmissionPending, Requested: boundTags(requested), FirstSeen: now, LastSeen: now, Note: note})
	return wire.AdmissionPending, nil
}

// boundTags keeps the requested tags within the wire's bounds (they were
// checked on the wire; this keeps the record bounded whatever the caller).
func boundTags(tags []string) []string {
	out := make([]string, 0, min(len(tags), wire.MaxTags))
	for _, t := range tags {
		if len(out) == wire.MaxTags {
			break
		}
		out = append(out, wire.Cut(t, wire.MaxTagLen))
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Prune forgets pending keys unheard for PendingTTL and returns how many.
func (g *Registry) Prune(now time.Time) int {
	n := 0
	for id, r := range g.records {
		if r.State == wire.AdmissionPending && now.Sub(r.LastSeen) > g.PendingTTL {
			g.setRecord(id, nil)
			n++
		}
	}
	return n
}

// Admitted forgets the record of a key the fleet now admits (it lives in
// the controller from now on).
func (g *Registry) Admitted(id string) {
	if g.records[id] != nil {
		g.setRecord(id, nil)
	}
}

// Reject refuses a key that is not in the fleet (pending or unknown).
func (g *Registry) Reject(id, by, why string, now time.Time) (Record, error) {
	r := g.records[id]
	if r != nil && r.State != wire.AdmissionPending {
		return *r, fmt.Errorf("%w: %s is %s", ErrState, id, r.State)
	}
	n := &Record{ID: id, State: wire.AdmissionRejected, Decided: now, DecidedBy: by, Why: wire.Cut(why, MaxWhy)}
	if r != nil {
		n.Requested, n.FirstSeen, n.LastSeen = r.Requested, r.FirstSeen, r.LastSeen
	}
	g.setRecord(id, n)
	return *n, nil
}

// Decommissioned records that a host left the fleet: its key is refused
// from now on.
func (g *Registry) Decommissioned(id, fleet, by, why string, now time.Time) Record {
	n := &Record{ID: id, State: wire.AdmissionDecommissioned, Fleet: fleet, Decided: now, DecidedBy: by, Why: wire.Cut(why, MaxWhy)}
	g.setRecord(id, n)
	return *n
}

// TokenPrefix starts every enrolment token: "rft_<id>_<secret>".
const TokenPrefix = "rft_"

// TokenSpec is what an operator asks for when issuing a token.
type TokenSpec struct {
	Fleet   string
	Tags    []string
	TTL     time.Duration
	MaxUses int
	Note    string
}

// CreateToken issues a token and returns its secret form (shown once: the
// registry keeps only its hash) with the record.
func (g *Registry) CreateToken(spec TokenSpec, by string, now time.Time) (string, Token, error) {
	switch {
	case spec.TTL <= 0:
		return "", Token{}, errors.New("admission: a token needs a lifetime (e.g. 24h); tokens do not live forever")
	case spec.MaxUses < 0:
		return "", Token{}, errors.New("admission: max uses is not negative (0: any number until it expires)")
	case len(spec.Tags) > wire.MaxTags:
		return "", Token{}, fmt.Errorf("admission: %d tags; the limit is %d", len(spec.Tags), wire.MaxTags)
	case len(spec.Fleet) > 64:
		return "", Token{}, errors.New("admission: a fleet name is at most 64 bytes")
	}
	for _, t := range spec.Tags {
		if t == "" || len(t) > wire.MaxTagLen {
			return "", Token{}, fmt.Errorf("admission: tag %.70q: tags are 1 to %d bytes", t, wire.MaxTagLen)
		}
	}
	if len(g.tokens) >= MaxTokens {
		return "", Token{}, fmt.Errorf("admission: %d tokens are kept; remove expired ones first", len(g.tokens))
	}
	var idb [6]byte
	var sec [24]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", Token{}, err
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return "", Token{}, err
	}
	id := hex.EncodeToString(idb[:])
	secret := TokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(sec[:])
	sum := sha256.Sum256([]byte(secret))
	t := &Token{ID: id, Hash: hex.EncodeToString(sum[:]), Fleet: spec.Fleet, Tags: slices.Clone(spec.Tags),
		Created: now, CreatedBy: by, Note: wire.Cut(spec.Note, MaxWhy), Expires: now.Add(spec.TTL), MaxUses: spec.MaxUses}
	g.touchToken(id)
	g.tokens[id] = t
	return secret, *t, nil
}

// Redeem checks a token a host presented and counts one use.
func (g *Registry) Redeem(secret string, now time.Time) (Token, error) {
	rest, ok := strings.CutPrefix(secret, TokenPrefix)
	id, _, ok2 := strings.Cut(rest, "_")
	t := g.tokens[id]
	if !ok || !ok2 || t == nil {
		return Token{}, fmt.Errorf("%w: unknown token", ErrToken)
	}
	sum := sha256.Sum256([]byte(secret))
	want, _ := hex.DecodeString(t.Hash)
	if subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return Token{}, fmt.Errorf("%w: unknown token", ErrToken)
	}
	if err := t.Valid(now); err != nil {
		return *t, err
	}
	g.touchToken(id)
	c := *t
	c.Uses++
	g.tokens[id] = &c
	return c, nil
}

// RevokeToken stops a token from admitting more hosts (those it admitted
// stay).
func (g *Registry) RevokeToken(id string, now time.Time) (Token, error) {
	t := g.tokens[id]
	if t == nil {
		return Token{}, fmt.Errorf("%w: token %.20q", ErrNotFound, id)
	}
	if !t.Revoked.IsZero() {
		return *t, nil
	}
	g.touchToken(id)
	c := *t
	c.Revoked = now
	g.tokens[id] = &c
	return c, nil
}

// Tokens returns every token, by creation time.
func (g *Registry) Tokens() []Token {
	out := make([]Token, 0, len(g.tokens))
	for _, t := range g.tokens {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b Token) int { return a.Created.Compare(b.Created) })
	return out
}

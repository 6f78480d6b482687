package main

import (
	"context"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/wire"
)

// operations are what an operator command does, whether it talks to a
// running server (server.Client, over its API) or acts on a state
// directory no server holds (local, a server.Server opened on it).
type operations interface {
	Rollouts(ctx context.Context) ([]server.View, error)
	Start(ctx context.Context, q server.StartRequest) (controller.Decision, server.View, error)
	Act(ctx context.Context, channel uint32, action controller.Kind, who, why string) (controller.Decision, server.View, error)
	Allow(ctx context.Context, channel, version uint32, who, why string) (controller.Decision, server.View, error)
	Hosts(ctx context.Context, state wire.Admission, after string, limit int) (server.HostList, error)
	Host(ctx context.Context, id string) (server.HostView, error)
	HostAction(ctx context.Context, id, action string, q server.HostRequest) (server.HostView, error)
	CreateToken(ctx context.Context, q server.TokenRequest) (server.NewToken, error)
	Tokens(ctx context.Context) ([]admission.Token, error)
	RevokeToken(ctx context.Context, id, who, why string) (admission.Token, error)
}

var _ operations = (*server.Client)(nil)

// remote is a running server's API; its errors say what to do about a
// certificate the command does not trust.
type remote struct{ c *server.Client }

func (r remote) Rollouts(ctx context.Context) ([]server.View, error) {
	vs, err := r.c.Rollouts(ctx)
	return vs, tlsHint(err)
}

func (r remote) Start(ctx context.Context, q server.StartRequest) (controller.Decision, server.View, error) {
	d, v, err := r.c.Start(ctx, q)
	return d, v, tlsHint(err)
}

func (r remote) Act(ctx context.Context, ch uint32, a controller.Kind, who, why string) (controller.Decision, server.View, error) {
	d, v, err := r.c.Act(ctx, ch, a, who, why)
	return d, v, tlsHint(err)
}

func (r remote) Allow(ctx context.Context, ch, ver uint32, who, why string) (controller.Decision, server.View, error) {
	d, v, err := r.c.Allow(ctx, ch, ver, who, why)
	return d, v, tlsHint(err)
}

func (r remote) Hosts(ctx context.Context, s wire.Admission, after string, limit int) (server.HostList, error) {
	l, err := r.c.Hosts(ctx, s, after, limit)
	return l, tlsHint(err)
}

func (r remote) Host(ctx context.Context, id string) (server.HostView, error) {
	h, err := r.c.Host(ctx, id)
	return h, tlsHint(err)
}

func (r remote) HostAction(ctx context.Context, id, action string, q server.HostRequest) (server.HostView, error) {
	h, err := r.c.HostAction(ctx, id, action, q)
	return h, tlsHint(err)
}

func (r remote) CreateToken(ctx context.Context, q server.TokenRequest) (server.NewToken, error) {
	t, err := r.c.CreateToken(ctx, q)
	return t, tlsHint(err)
}

func (r remote) Tokens(ctx context.Context) ([]admission.Token, error) {
	ts, err := r.c.Tokens(ctx)
	return ts, tlsHint(err)
}

func (r remote) RevokeToken(ctx context.Context, id, who, why string) (admission.Token, error) {
	t, err := r.c.RevokeToken(ctx, id, who, why)
	return t, tlsHint(err)
}

// local acts on a state directory through a server.Server opened on it.
type local struct{ s *server.Server }

func (l local) Rollouts(context.Context) ([]server.View, error) { return l.s.Status(), nil }

func (l local) Start(_ context.Context, q server.StartRequest) (controller.Decision, server.View, error) {
	spec, err := q.Spec()
	if err != nil {
		return controller.Decision{}, server.View{}, err
	}
	return l.s.Start(spec, q.Who, q.Why)
}

func (l local) Act(_ context.Context, ch uint32, a controller.Kind, who, why string) (controller.Decision, server.View, error) {
	return l.s.Act(ch, a, who, why)
}

func (l local) Allow(_ context.Context, ch, v uint32, who, why string) (controller.Decision, server.View, error) {
	return l.s.Allow(ch, v, who, why)
}

func (l local) Hosts(_ context.Context, s wire.Admission, after string, limit int) (server.HostList, error) {
	return l.s.Hosts(s, after, limit), nil
}

func (l local) Host(_ context.Context, id string) (server.HostView, error) { return l.s.HostInfo(id) }

func (l local) HostAction(_ context.Context, id, action string, q server.HostRequest) (server.HostView, error) {
	return l.s.HostAction(id, action, q)
}

func (l local) CreateToken(_ context.Context, q server.TokenRequest) (server.NewToken, error) {
	return l.s.CreateToken(q)
}

func (l local) Tokens(context.Context) ([]admission.Token, error) { return l.s.Tokens(), nil }

func (l local) RevokeToken(_ context.Context, id, who, _ string) (admission.Token, error) {
	return l.s.RevokeToken(id, who)
}

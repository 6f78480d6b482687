package server

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/wire"
)

// The Client's side of the admission API (hosts.go).

// Hosts lists one page of hosts in a state ("" for all).
func (c *Client) Hosts(ctx context.Context, state wire.Admission, after string, limit int) (HostList, error) {
	q := url.Values{}
	if state != "" {
		q.Set("admission", string(state))
	}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out HostList
	err := c.do(ctx, http.MethodGet, "/v1/hosts?"+q.Encode(), nil, &out)
	return out, err
}

// Host shows one host or key.
func (c *Client) Host(ctx context.Context, id string) (HostView, error) {
	var out HostAction
	err := c.do(ctx, http.MethodGet, "/v1/hosts/"+url.PathEscape(id), nil, &out)
	return out.Host, err
}

// HostAction applies accept, reject, decommission or tags to a host.
func (c *Client) HostAction(ctx context.Context, id, action string, q HostRequest) (HostView, error) {
	var out HostAction
	err := c.do(ctx, http.MethodPost, "/v1/hosts/"+url.PathEscape(id)+"/"+url.PathEscape(action), q, &out)
	return out.Host, err
}

// CreateToken issues an enrolment token.
func (c *Client) CreateToken(ctx context.Context, q TokenRequest) (NewToken, error) {
	var out NewToken
	err := c.do(ctx, http.MethodPost, "/v1/enrolment-tokens", q, &out)
	return out, err
}

// Tokens lists the enrolment tokens.
func (c *Client) Tokens(ctx context.Context) ([]admission.Token, error) {
	var out struct {
		Tokens []admission.Token `json:"tokens"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/enrolment-tokens", nil, &out)
	return out.Tokens, err
}

// RevokeToken revokes an enrolment token.
func (c *Client) RevokeToken(ctx context.Context, id, who, why string) (admission.Token, error) {
	var out struct {
		Token admission.Token `json:"token"`
	}
	err := c.do(ctx, http.MethodPost, "/v1/enrolment-tokens/"+url.PathEscape(id)+"/revoke", ActionRequest{Who: who, Why: why}, &out)
	return out.Token, err
}

// Allow takes a version off a channel's deny list.
func (c *Client) Allow(ctx context.Context, channel, version uint32, who, why string) (controller.Decision, View, error) {
	var out decisionResponse
	err := c.do(ctx, http.MethodPost, fmt.Sprintf("/v1/rollouts/%d/allow", channel), AllowRequest{ActionRequest: ActionRequest{Who: who, Why: why}, Version: version}, &out)
	return out.Decision, out.Rollout, err
}

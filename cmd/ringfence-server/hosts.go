package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/internal/cli"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/wire"
)

// The fleet's admission from the command line: 'hosts' and 'tokens'
// (server/hosts.go has the rules), and 'rollout allow'.

const hostsHelp = `
A host's key is self-made: what a host reports counts only once the fleet has
admitted it. A host is admitted by an enrolment token it presents (see
'tokens create'; the token carries the fleet and tags its hosts get), or by an
operator:

  hosts list [--admission pending|accepted|rejected|decommissioned]
  hosts show ID
  hosts accept ID|--key BASE64 [--fleet F] [--tags a,b] --why TEXT
            admit a pending key, take back a rejected or decommissioned one,
            or admit a host in advance (it counts from its first batch)
  hosts reject ID --why TEXT        refuse a key that is not in the fleet
  hosts decommission ID --why TEXT  take a host out of the fleet
  hosts tag ID --tags a,b --why TEXT
            set a host's tags (the canary group is a tag): running rollouts
            whose stages name tags are re-signed

A host's id is printed by 'ringfence status' on the host (h- and 32 hex
digits); --key takes its public key instead. Tags and fleet are the server's
record: what a host asks for is shown (requested_tags) and counts for nothing.`

func runHosts(args []string, stdout, stderr io.Writer) int {
	return sub("hosts", args, []cli.Command{
		{Name: "list", Run: hostsList},
		{Name: "show", Run: hostsShow},
		{Name: "accept", Run: func(a []string, o, e io.Writer) int { return hostsAction("accept", a, o, e) }},
		{Name: "reject", Run: func(a []string, o, e io.Writer) int { return hostsAction("reject", a, o, e) }},
		{Name: "decommission", Run: func(a []string, o, e io.Writer) int { return hostsAction("decommission", a, o, e) }},
		{Name: "tag", Run: func(a []string, o, e io.Writer) int { return hostsAction("tags", a, o, e) }},
		{Name: "help", Run: func(_ []string, o, _ io.Writer) int {
			fmt.Fprintf(o, "Usage: ringfence-server hosts SUBCOMMAND ...\n%s\n", hostsHelp)
			return cli.ExitOK
		}},
	}, stdout, stderr)
}

func hostsList(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("hosts list", "hosts list [--admission S] [--after ID] [--limit N] [--json] (--state DIR | --server URL)", hostsHelp, stdout, stderr)
	where := targetFlags(fs)
	state := fs.String("admission", "", "only hosts in this state: pending, accepted, rejected or decommissioned")
	after := fs.String("after", "", "start after this id (the 'next' of the page before)")
	limit := fs.Int("limit", 100, "hosts per page (at most 1000)")
	asJSON := fs.Bool("json", false, "print the page as JSON (the API's shape)")
	if _, code, ok := cli.ParseArgs(fs, args, stdout); !ok {
		return code
	}
	t, ok := where(stderr, "hosts list")
	if !ok {
		return cli.ExitUsage
	}
	defer t.close()
	l, err := t.ops.Hosts(context.Background(), wire.Admission(*state), *after, *limit)
	if err != nil {
		return fail(stderr, "hosts list", err)
	}
	if *asJSON {
		return printJSON(stdout, l)
	}
	fmt.Fprintf(stdout, "%d hosts in the fleet, %d pending\n", l.Fleet, l.Pending)
	for _, h := range l.Hosts {
		printHost(stdout, h)
	}
	if l.Next != "" {
		fmt.Fprintf(stdout, "more: --after %s\n", l.Next)
	}
	return cli.ExitOK
}

func hostsShow(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("hosts show", "hosts show ID [--json] (--state DIR | --server URL)", hostsHelp, stdout, stderr)
	where := targetFlags(fs)
	asJSON := fs.Bool("json", false, "print the host as JSON")
	pos, code, ok := cli.ParseArgs(fs, args, stdout)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "ringfence-server hosts show: give one host id")
		return cli.ExitUsage
	}
	t, ok := where(stderr, "hosts show")
	if !ok {
		return cli.ExitUsage
	}
	defer t.close()
	h, err := t.ops.Host(context.Background(), pos[0])
	if err != nil {
		return fail(stderr, "hosts show", err)
	}
	if *asJSON {
		return printJSON(stdout, h)
	}
	printHost(stdout, h)
	if h.Manifest != "" {
		fmt.Fprintf(stdout, "  sensor manifest sha256 %s\n", h.Manifest)
	}
	return cli.ExitOK
}

func hostsAction(action string, args []string, stdout, stderr io.Writer) int {
	name := map[string]string{"tags": "tag"}[action]
	if name == "" {
		name = action
	}
	cmd := "hosts " + name
	fs := newFlags(cmd, cmd+" ID|--key BASE64 --why TEXT [--fleet F] [--tags a,b] (--state DIR | --server URL)", hostsHelp, stdout, stderr)
	where := targetFlags(fs)
	key := fs.String("key", "", "the host's public key (base64 ed25519) instead of its id")
	fleet := fs.String("fleet", "", "the fleet (customer) the host belongs to (accept)")
	tags := fs.String("tags", "", "comma-separated tags (accept, tag)")
	who := fs.String("who", whoAmI(), "who acts (recorded)")
	why := fs.String("why", "", "why (required; recorded)")
	pos, code, ok := cli.ParseArgs(fs, args, stdout)
	if !ok {
		return code
	}
	id := ""
	switch {
	case *key != "" && len(pos) == 0 && action == "accept":
		pub, err := base64.StdEncoding.DecodeString(*key)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			fmt.Fprintf(stderr, "ringfence-server %s: --key is not a base64 ed25519 public key\n", cmd)
			return cli.ExitUsage
		}
		id = wire.HostIDOf(pub)
	case len(pos) == 1 && *key == "":
		id = pos[0]
	default:
		fmt.Fprintf(stderr, "ringfence-server %s: give one host id (or, to accept, --key)\n", cmd)
		return cli.ExitUsage
	}
	if *why == "" {
		fmt.Fprintf(stderr, "ringfence-server %s: --why is required (it is recorded)\n", cmd)
		return cli.ExitUsage
	}
	t, ok := where(stderr, cmd)
	if !ok {
		return cli.ExitUsage
	}
	defer t.close()
	q := server.HostRequest{ActionRequest: server.ActionRequest{Who: *who, Why: *why}, Fleet: *fleet, Tags: splitList(*tags)}
	h, err := t.ops.HostAction(context.Background(), id, action, q)

	if err != nil {
		fmt.Fprintf(stderr, "ringfence-server %s: %v\n", cmd, err)
		return cli.ExitRejected
	}
	printHost(stdout, h)
	return cli.ExitOK
}

func printHost(w io.Writer, h server.HostView) {
	fmt.Fprintf(w, "%s  %-14s", h.ID, h.State)
	if h.Fleet != "" {
		fmt.Fprintf(w, " fleet=%s", h.Fleet)
	}
	if len(h.Tags) > 0 {
		fmt.Fprintf(w, " tags=%s", strings.Join(h.Tags, ","))
	}
	if len(h.Requested) > 0 {
		fmt.Fprintf(w, " asks-for-tags=%s", strings.Join(h.Requested, ","))
	}
	switch {
	case h.Sensor != "":
		fmt.Fprintf(w, " sensor=%s", h.Sensor)
	case h.State == wire.AdmissionAccepted && !h.LastSeen.IsZero():
		// Heard from, but said no sensor version: an older ringfenced,
		// outside every rollout of constrained content.
		fmt.Fprint(w, " sensor=unknown")
	}
	if h.By != "" {
		fmt.Fprintf(w, " by=%s", h.By)
	}
	if !h.LastSeen.IsZero() {
		fmt.Fprintf(w, " last-seen=%s", h.LastSeen.UTC().Format(time.RFC3339))
	}
	if h.Why != "" {
		fmt.Fprintf(w, " why=%q", h.Why)
	}
	if h.Note != "" {
		fmt.Fprintf(w, " note=%q", h.Note)
	}
	fmt.Fprintln(w)
}

func printJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
	return cli.ExitOK
}

const tokensHelp = `
An enrolment token admits the hosts that present it, at once, into a fleet
(a customer) with tags (the canary group is a tag): put it in the hosts'
telemetry.enrolment_token_file. The token is printed once; the server keeps
only its hash. A token expires (--ttl) and may be limited to a number of
hosts (--max-uses); revoking it stops new admissions, not the hosts it
admitted.

  tokens create --ttl 72h [--fleet F] [--tags a,b] [--max-uses N] [--note T]
  tokens list
  tokens revoke ID --why TEXT`

func runTokens(args []string, stdout, stderr io.Writer) int {
	return sub("tokens", args, []cli.Command{
		{Name: "create", Summary: "make a token that admits hosts (printed once)", Run: tokensCreate},
		{Name: "list", Summary: "list the tokens, never their secrets", Run: tokensList},
		{Name: "revoke", Summary: "stop a token admitting hosts", Run: tokensRevoke},
	}, stdout, stderr)
}

func tokensCreate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("tokens create", "tokens create --ttl DURATION [--fleet F] [--tags a,b] [--max-uses N] (--state DIR | --server URL)", tokensHelp, stdout, stderr)
	where := targetFlags(fs)
	ttl := fs.String("ttl", "", "how long the token admits hosts (required), e.g. 72h")
	fleet := fs.String("fleet", "", "the fleet (customer) its hosts join")
	tags := fs.String("tags", "", "comma-separated tags its hosts get (e.g. canary)")
	uses := fs.Int("max-uses", 0, "hosts it may admit (0: any number until it expires)")
	note := fs.String("note", "", "what it is for (recorded)")
	who := fs.String("who", whoAmI(), "who issues it (recorded)")
	quiet := fs.Bool("quiet", false, "print only the token (for scripts)")
	if _, code, ok := cli.ParseArgs(fs, args, stdout); !ok {
		return code
	}
	if *ttl == "" {
		fmt.Fprintln(stderr, "ringfence-server tokens create: --ttl is required (e.g. 72h): tokens do not live forever")
		return cli.ExitUsage
	}
	t, ok := where(stderr, "tokens create")
	if !ok {
		return cli.ExitUsage
	}
	defer t.close()
	q := server.TokenRequest{Who: *who, Fleet: *fleet, Tags: splitList(*tags), TTL: *ttl, MaxUses: *uses, Note: *note}
	nt, err := t.ops.CreateToken(context.Background(), q)
	if err != nil {
		fmt.Fprintf(stderr, "ringfence-server tokens create: %v\n", err)
		return cli.ExitRejected
	}
	if *quiet {
		fmt.Fprintln(stdout, nt.Token)
		return cli.ExitOK
	}
	fmt.Fprintf(stdout, "%s\n\n", nt.Token)
	fmt.Fprintf(stdout, "token %s: fleet %q, tags %v, expires %s, max uses %d\n", nt.Record.ID, nt.Record.Fleet, nt.Record.Tags,
		nt.Record.Expires.UTC().Format(time.RFC3339), nt.Record.MaxUses)
	fmt.Fprintln(stdout, "This is the only time the token is shown; write it into the hosts' telemetry.enrolment_token_file (mode 0600).")
	return cli.ExitOK
}

func tokensList(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("tokens list", "tokens list [--json] (--state DIR | --server URL)", tokensHelp, stdout, stderr)
	where := targetFlags(fs)
	asJSON := fs.Bool("json", false, "print the tokens as JSON")
	if _, code, ok := cli.ParseArgs(fs, args, stdout); !ok {
		return code
	}
	t, ok := where(stderr, "tokens list")
	if !ok {
		return cli.ExitUsage
	}
	defer t.close()
	ts, err := t.ops.Tokens(context.Background())
	if err != nil {
		return fail(stderr, "tokens list", err)
	}
	if *asJSON {
		return printJSON(stdout, ts)
	}
	if len(ts) == 0 {
		fmt.Fprintln(stdout, "no enrolment tokens; make one with 'ringfence-server tokens create --ttl 72h'")
	}
	now := time.Now()
	for _, tk := range ts {
		state := "valid"
		if err := tk.Valid(now); err != nil {
			state = strings.TrimPrefix(err.Error(), admission.ErrToken.Error()+": ")
		}
		fmt.Fprintf(stdout, "%s  fleet=%q tags=%v uses=%d/%d expires=%s by=%s  %s\n", tk.ID, tk.Fleet, tk.Tags, tk.Uses, tk.MaxUses,
			tk.Expires.UTC().Format(time.RFC3339), tk.CreatedBy, state)
	}
	return cli.ExitOK
}

func tokensRevoke(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("tokens revoke", "tokens revoke ID --why TEXT (--state DIR | --server URL)", tokensHelp, stdout, stderr)
	where := targetFlags(fs)
	who := fs.String("who", whoAmI(), "who revokes it (recorded)")
	why := fs.String("why", "", "why (required)")
	pos, code, ok := cli.ParseArgs(fs, args, stdout)
	if !ok {
		return code
	}
	if len(pos) != 1 || *why == "" {
		fmt.Fprintln(stderr, "ringfence-server tokens revoke: give one token id and --why")
		return cli.ExitUsage
	}
	t, ok := where(stderr, "tokens revoke")
	if !ok {
		return cli.ExitUsage
	}
	defer t.close()
	tk, err := t.ops.RevokeToken(context.Background(), pos[0], *who, *why)
	if err != nil {
		fmt.Fprintf(stderr, "ringfence-server tokens revoke: %v\n", err)
		return cli.ExitRejected
	}
	fmt.Fprintf(stdout, "token %s revoked at %s; the %d hosts it admitted stay\n", tk.ID, tk.Revoked.UTC().Format(time.RFC3339), tk.Uses)
	return cli.ExitOK
}

const rolloutAllowHelp = `
Allow takes a version off a channel's deny list, so that it can be rolled out
again (a halt that was a false alarm, say). The decision is recorded with
--who and --why in the rollout's decision log, and the plan is re-signed.
Hosts that reverted the version keep it quarantined: that was their own boot
guard's finding.`

func rolloutAllow(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("rollout allow", "rollout allow --channel N --version V --why TEXT (--state DIR | --server URL)", rolloutAllowHelp, stdout, stderr)
	where := targetFlags(fs)
	channel := fs.Uint("channel", 0, "channel number")
	version := fs.Uint("version", 0, "the denied version to allow again")
	who := fs.String("who", whoAmI(), "who acts (recorded)")
	why := fs.String("why", "", "why (required; recorded)")
	if _, code, ok := cli.ParseArgs(fs, args, stdout); !ok {
		return code
	}
	if *channel == 0 || *version == 0 || *why == "" {
		fmt.Fprintln(stderr, "ringfence-server rollout allow: --channel, --version and --why are required")
		return cli.ExitUsage
	}
	t, ok := where(stderr, "rollout allow")
	if !ok {
		return cli.ExitUsage
	}
	defer t.close()
	d, v, err := t.ops.Allow(context.Background(), uint32(*channel), uint32(*version), *who, *why)
	return decided(stdout, stderr, "rollout allow", d, v, err)
}

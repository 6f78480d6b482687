package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/server"
)

// serverFlags are the flags that name a server for an operator command: a
// URL with a token file, or the state directory of the server that runs
// on it (its serve.url and operator.token), and the CA to trust for HTTPS.
type serverFlags struct {
	url, tokenFile, state, caFile *string
}

func addServerFlags(fs *flag.FlagSet, stateHelp string) serverFlags {
	return serverFlags{
		url:       fs.String("server", "", "URL of a running server (with --token-file, or --state to find the token)"),
		tokenFile: fs.String("token-file", "", "file holding the operator token (default: STATE/"+server.TokenFile+")"),
		state:     fs.String("state", "", stateHelp),
		caFile:    fs.String("ca-file", "", "PEM certificates to trust for an https server instead of the system's (its CA, or its self-signed certificate)"),
	}
}

// errNoServer: neither --server nor --state was given.
var errNoServer = errors.New("give --server URL or --state DIR")

// client returns the API client of the server the flags name, and whether
// one answered. With --server it is that server (an error when its token
// cannot be read); with --state, the server running on the state
// directory, or (nil, false, nil) when none answers there; an answer with
// a certificate the command does not trust is an error, never a reason to
// act on a running server's state directory behind its back.
func (f serverFlags) client() (*server.Client, bool, error) {
	hc, err := caClient(*f.caFile)
	if err != nil {
		return nil, false, err
	}
	switch {
	case *f.url != "":
		tf := *f.tokenFile
		if tf == "" && *f.state != "" {
			tf = filepath.Join(*f.state, server.TokenFile)
		}
		if tf == "" {
			return nil, false, errors.New("--server needs --token-file (or --state)")
		}
		tok, err := boundedio.ReadFile(tf, server.MaxTokenFile)
		if err != nil {
			return nil, false, fmt.Errorf("operator token: %w", err)
		}
		return &server.Client{URL: *f.url, Token: strings.TrimSpace(string(tok)), HTTP: hc}, true, nil
	case *f.state != "":
		if _, err := os.Stat(*f.state); errors.Is(err, os.ErrNotExist) {
			return nil, false, fmt.Errorf("state directory %s does not exist: check --state (the directory 'ringfence-server serve --state' keeps its state in)", *f.state)
		}
		c, err := server.ClientFor(*f.state)
		if err != nil {
			return nil, false, nil // no server recorded there
		}
		c.HTTP = hc
		if _, err := c.Rollouts(context.Background()); err != nil {
			if untrusted(err) {
				return nil, false, tlsHint(err)
			}
			return nil, false, nil // recorded, but not answering: gone
		}
		return c, true, nil
	}
	return nil, false, errNoServer
}

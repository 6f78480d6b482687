package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ringfence/ringfence/fleetpg"
	"github.com/ringfence/ringfence/internal/cli"
	"github.com/ringfence/ringfence/tufrepo"
)

// repoDBFlag is --db on the commands that write the repository.
func repoDBFlag(fs *flag.FlagSet) *string {
	return fs.String("db", "", "the replicas' database (postgres://...): the repository shared in it is pulled into --repo, changed, and pushed back (docs/scale.md); empty: --repo alone")
}

// maxRepoTries bounds how often a change of the shared repository is
// redone after another writer pushed first.
const maxRepoTries = 5

// updateRepo changes the repository in dir with fn (tufrepo.Update). With
// dbURL, dir is a working copy of the replicas' shared repository: pulled
// first, changed, then pushed in one transaction that is refused if
// another writer (the leader signing a plan, another publisher) pushed
// meanwhile, in which case all of it is done again from the new version.
// fn may run more than once.
func updateRepo(dbURL, dir, keys string, fn func(*tufrepo.Repo) error) error {
	if dbURL == "" {
		return tufrepo.Update(dir, keys, nil, fn)
	}
	if err := checkDB(dbURL); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), dbOpenTimeout)
	defer cancel()
	repo, err := fleetpg.OpenRepo(ctx, dbURL)
	if err != nil {
		return err
	}
	defer repo.Close()
	for try := 1; ; try++ {
		st, err := repo.Pull(ctx, dir)
		if err != nil {
			return err
		}
		if st.Version == 0 {
			return errors.New("the database holds no repository yet: start a replica ('serve --db') with --repo the repository made by 'repo init' first; it seeds the database")
		}
		if err := tufrepo.Update(dir, keys, nil, fn); err != nil {
			return err
		}
		_, err = repo.Push(ctx, dir, st.Version, nil)
		if err == nil || !errors.Is(err, fleetpg.ErrRepoMoved) || try == maxRepoTries {
			return err
		}
	}
}

func repoExport(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("repo export", "repo export --db postgres://... [--follow] DIR", `
Export writes the replicas' shared repository (kept in their database) into
DIR as the static files a web server or CDN serves: metadata/ and targets/,
byte for byte what every replica serves, timestamp.json last. Only files that
differ are written; files the database lacks are removed. With --follow it
keeps DIR current until interrupted, within moments of every change.`, stdout, stderr)
	dbURL := fs.String("db", "", "the replicas' database (postgres://...)")
	follow := fs.Bool("follow", false, "keep DIR current until interrupted")
	pos, code, ok := cli.ParseArgs(fs, args, stdout)
	if !ok {
		return code
	}
	if !need(stderr, "repo export", map[string]string{"db": *dbURL}) {
		return cli.ExitUsage
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "ringfence-server repo export: give exactly one directory")
		return cli.ExitUsage
	}
	if err := checkDB(*dbURL); err != nil {
		return fail(stderr, "repo export", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	octx, cancel := context.WithTimeout(ctx, dbOpenTimeout)
	repo, err := fleetpg.OpenRepo(octx, *dbURL)
	cancel()
	if err != nil {
		return fail(stderr, "repo export", err)
	}
	defer repo.Close()
	if err := os.MkdirAll(pos[0], 0o755); err != nil {
		return fail(stderr, "repo export", err)
	}
	export := func() error {
		pctx, cancel := context.WithTimeout(ctx, dbOpenTimeout)
		defer cancel()
		st, err := repo.Pull(pctx, pos[0])
		if err != nil {
			return err
		}
		if st.Version == 0 {
			return errors.New("the database holds no repository yet (no replica has started on it)")
		}
		fmt.Fprintf(stdout, "exported version %d into %s: %d files written, %d removed\n", st.Version, pos[0], st.Written, st.Removed)
		return nil
	}
	if err := export(); err != nil {
		return fail(stderr, "repo export", err)
	}
	if !*follow {
		return cli.ExitOK
	}
	for range repo.Watch(ctx, exportPoll) {
		if err := export(); err != nil {
			fmt.Fprintf(stderr, "ringfence-server repo export: %v (trying again at the next change)\n", err)
		}
	}
	return cli.ExitOK
}

// exportPoll is how often 'repo export --follow' asks for the version when
// notifications do not come.
const exportPoll = 5 * time.Second

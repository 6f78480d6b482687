package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ringfence/ringfence/fleetdb"
	"github.com/ringfence/ringfence/internal/cli"
	"github.com/ringfence/ringfence/server"
)

func runState(args []string, stdout, stderr io.Writer) int {
	return sub("state", args, []cli.Command{
		{Name: "backup", Summary: "copy server.db consistently, from a running server or its state directory (PostgreSQL: pg_dump)", Run: stateBackup},
		{Name: "check", Summary: "check a copy of server.db before you restore it", Run: stateCheck},
	}, stdout, stderr)
}

const stateBackupHelp = `
Backup writes a consistent copy of the server's state (server.db: hosts,
rollouts, their decisions and deny lists) to --out, from one read
transaction: every decision acknowledged before it is in it. A running
server keeps serving meanwhile.

With --state, it asks the server running on that directory (serve.url,
operator.token), or, when none runs, reads the directory's server.db itself
(read-only). With --server, it asks that server (operator token from
--token-file).

The copy is checked like 'state check' before it replaces --out (written
durably, mode 0600). To restore: stop the server, copy the backup over
STATE/server.db, start the server.

A server started with --db postgres://... keeps its state in PostgreSQL, not
in server.db: back that database up with PostgreSQL's own tools (pg_dump, or
the provider's backups and point-in-time recovery). Given such a --db, this
command says so and copies nothing (exit 2).`

func stateBackup(args []string, stdout, stderr io.Writer) int {
	const cmd = "state backup"
	fs := newFlags(cmd, "state backup --out FILE (--state DIR | --server URL [--token-file F]) [--ca-file F]", stateBackupHelp, stdout, stderr)
	out := fs.String("out", "", "the backup file to write")
	where := addServerFlags(fs, "the server's state directory")
	state := where.state
	dbURL := fs.String("db", "", "the --db the server was started with: a postgres:// URL is backed up with pg_dump, not by this command")
	if _, code, ok := cli.ParseArgs(fs, args, stdout); !ok {
		return code
	}
	if err := checkDB(*dbURL); err != nil {
		return fail(stderr, cmd, err)
	}
	if *dbURL != "" {
		return fail(stderr, cmd, errors.New("the state is in PostgreSQL (--db), not in server.db: back the database up with PostgreSQL's own tools, "+
			"e.g. pg_dump --format=custom --file=FILE 'postgres://...' (or the provider's backups and point-in-time recovery); "+
			"restore with pg_restore into an empty database and start 'serve --db' on it"))
	}
	if !need(stderr, cmd, map[string]string{"out": *out}) {
		return cli.ExitUsage
	}
	if *state != "" {
		if same, _ := sameFile(*out, filepath.Join(*state, fleetdb.FileName)); same {
			return fail(stderr, cmd, fmt.Errorf("--out %s is the database itself; write the backup somewhere else", *out))
		}
	}
	client, running, err := where.client()
	if errors.Is(err, errNoServer) {
		fmt.Fprintf(stderr, "ringfence-server %s: %v\n", cmd, err)
		return cli.ExitUsage
	}
	if err != nil {
		return fail(stderr, cmd, err)
	}
	if !running {
		client = nil
	} else if client.HTTP != nil {
		// A pinned client's 30 s timeout would cut a large backup short:
		// an hour, as Backup gives its own default client.
		hc := *client.HTTP
		hc.Timeout = time.Hour
		client.HTTP = &hc
	}

	var n int64
	var from string
	if client != nil {
		n, err = fleetdb.SaveBackup(*out, func(w io.Writer) (int64, error) { return client.Backup(context.Background(), w) })
		if err != nil {
			return fail(stderr, cmd, err)
		}
		from = "the server at " + client.URL
	} else {
		db, err := fleetdb.Open(*state, fleetdb.Options{ReadOnly: true, Timeout: time.Second})
		if errors.Is(err, fleetdb.ErrLocked) {
			return fail(stderr, cmd, fmt.Errorf("a server holds %s but does not answer at the URL in %s; give --server URL", *state, server.AddrFile))
		}
		if err != nil {
			return fail(stderr, cmd, err)
		}
		n, err = db.BackupFile(*out)
		db.Close()
		if err != nil {
			return fail(stderr, cmd, err)
		}
		from = db.Path() + " (no server running)"
	}
	fmt.Fprintf(stdout, "wrote %s (%d bytes), a checked copy of %s\n", *out, n, from)
	return cli.ExitOK
}

const stateCheckHelp = `
Check opens a state database read-only (STATE/server.db, or a backup given
with --file) and runs the consistency checks that 'serve' runs at start-up:
every page inside the file, the freelist, and bbolt's own check. It prints
ok, or what is damaged and what to do (exit 1).

A running server holds its server.db: check a fresh backup of it instead
('state backup' checks the copy it writes).`

func stateCheck(args []string, stdout, stderr io.Writer) int {
	const cmd = "state check"
	fs := newFlags(cmd, "state check (--state DIR | --file FILE)", stateCheckHelp, stdout, stderr)
	state := fs.String("state", "", "the server's state directory (checks its "+fleetdb.FileName+")")
	file := fs.String("file", "", "a database file to check (a backup)")
	if _, code, ok := cli.ParseArgs(fs, args, stdout); !ok {
		return code
	}
	var path string
	switch {
	case (*state == "") == (*file == ""):
		fmt.Fprintf(stderr, "ringfence-server %s: give one of --state DIR or --file FILE\n", cmd)
		return cli.ExitUsage
	case *state != "":
		path = filepath.Join(*state, fleetdb.FileName)
	default:
		path = *file
	}
	err := fleetdb.CheckFile(path)
	switch {
	case err == nil:
		info, err := os.Stat(path)
		if err != nil {
			return fail(stderr, cmd, err)
		}
		fmt.Fprintf(stdout, "ok: %s is consistent (%d bytes)\n", path, info.Size())
		return cli.ExitOK
	case errors.Is(err, fleetdb.ErrDamaged):
		fmt.Fprintf(stderr, "ringfence-server %s: %v\n", cmd, err)
		return cli.ExitRejected
	case errors.Is(err, fleetdb.ErrLocked):
		dir := *state
		if dir == "" {
			dir = filepath.Dir(path)
		}
		return fail(stderr, cmd, fmt.Errorf("%s is in use by a running ringfence-server; check a backup of it instead: "+
			"'ringfence-server state backup --state %s --out FILE' (it checks the copy it writes)", path, dir))
	}
	return fail(stderr, cmd, err)
}

// sameFile reports whether a and b both exist and are the same file.
func sameFile(a, b string) (bool, error) {
	ia, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	ib, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(ia, ib), nil
}

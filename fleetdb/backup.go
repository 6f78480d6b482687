package fleetdb

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	bolt "go.etcd.io/bbolt"

	"github.com/ringfence/ringfence/internal/atomicfile"
)

// Backup writes a consistent copy of the database to w, from one read
// transaction: every commit made before Backup began is in it, none made
// after. Writers are not blocked meanwhile (bbolt keeps the pages the
// transaction sees until it ends). The copy is a server.db: Open and
// CheckFile take it. It returns the bytes written.
func (db *DB) Backup(w io.Writer) (int64, error) {
	var n int64
	err := db.guard("back up", func() error {
		return db.db.View(func(tx *bolt.Tx) error {
			var err error
			n, err = tx.WriteTo(w)
			return err
		})
	})
	if err != nil && !errors.Is(err, ErrDamaged) {
		err = fmt.Errorf("fleetdb: back up %s: %w", db.path, err)
	}
	return n, err
}

// BackupFile writes a consistent copy of the database (see Backup) to
// path, durably and mode 0600, and checks the copy (CheckFile) before it
// replaces path. It returns the bytes written.
func (db *DB) BackupFile(path string) (int64, error) {
	if same, err := sameFile(path, db.path); err != nil || same {
		if err == nil {
			err = fmt.Errorf("fleetdb: %s is the database itself; write the backup somewhere else", path)
		}
		return 0, err
	}
	return SaveBackup(path, db.Backup)
}

// SaveBackup writes the backup that fill streams to path, durably and mode
// 0600, and checks it (CheckFile) before it replaces path: a backup that
// is cut short or damaged on the way never takes the place of a good one.
// It returns the bytes fill wrote.
func SaveBackup(path string, fill func(w io.Writer) (int64, error)) (int64, error) {
	var n int64
	err := atomicfile.Write(path, 0o600, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		var err error
		if n, err = fill(bw); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		// atomicfile hands fill the temporary file itself.
		tmp, ok := w.(*os.File)
		if !ok {
			return fmt.Errorf("fleetdb: cannot check the backup before it replaces %s", path)
		}
		if err := CheckFile(tmp.Name()); err != nil {
			return fmt.Errorf("the backup failed its check; %s is untouched: %w", path, err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// sameFile reports whether a and b are the same existing file.
func sameFile(a, b string) (bool, error) {
	ia, err := os.Stat(a)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("fleetdb: %w", err)
	}
	ib, err := os.Stat(b)
	if err != nil {
		return false, fmt.Errorf("fleetdb: %w", err)
	}
	return os.SameFile(ia, ib), nil
}

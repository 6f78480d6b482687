//go:build unix

package pgtest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPgSweepStopsStaleClusters: a cluster whose test process is gone (here:
// whose owner.lock was released without Stop, as the end of a process would
// release it) is stopped and removed by the next process's sweep; a cluster
// whose lock is held is left alone.
func TestPgSweepStopsStaleClusters(t *testing.T) {
	t.Parallel()          // after the others, which restart the shared cluster
	kept := NewCluster(t) // locked: the sweep must leave it
	stale, err := newCluster()
	if err != nil {
		t.Fatal(err)
	}
	liveMu.Lock()
	delete(live, stale) // Main must not stop it: the sweep is the test
	liveMu.Unlock()
	b, err := os.ReadFile(filepath.Join(stale.data, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(first)
	if err != nil {
		t.Fatalf("postmaster.pid: %q", b)
	}
	stale.unlock()
	// As if a minute later for this cluster only: others' clusters (other
	// test binaries may be starting theirs) keep the age rule.
	old := time.Now().Add(-dirAge)
	if err := os.Chtimes(filepath.Join(stale.dir, lockName), old, old); err != nil {
		t.Fatal(err)
	}

	sweep(stale.bin, time.Now())
	if _, err := os.Stat(stale.dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the stale cluster's directory %s is still there (%v)", stale.dir, err)
	}
	// The postmaster was reparented to init, which reaps it when it will:
	// signal 0 may find a zombie, whose /proc stat says Z.
	if err := syscall.Kill(pid, 0); err == nil {
		if st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
			if f := strings.Fields(string(st)); len(f) > 2 && f[2] != "Z" {
				t.Errorf("the stale cluster's postmaster (pid %d) still runs: %s", pid, st)
			}
		}
	}
	if _, err := os.Stat(kept.dir); err != nil {
		t.Errorf("the sweep removed a live cluster's directory: %v", err)
	}
	if !kept.running() {
		t.Error("the sweep stopped a live cluster")
	}
}

// TestFindBinSaysWhatIsMissing: without PostgreSQL, or with only part of
// it, the error names what is missing and how to install it.
func TestFindBinSaysWhatIsMissing(t *testing.T) {
	old := binGlob
	t.Cleanup(func() { binGlob = old })
	binGlob = filepath.Join(t.TempDir(), "none", "*", "bin")
	empty := t.TempDir()
	t.Setenv("PATH", empty)
	_, err := findBin()
	if err == nil || !strings.Contains(err.Error(), "PostgreSQL is not installed here") || !strings.Contains(err.Error(), "'make deps' installs postgresql") {
		t.Errorf("no PostgreSQL: %v", err)
	}
	if err := os.WriteFile(filepath.Join(empty, "initdb"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = findBin()
	if err == nil || !strings.Contains(err.Error(), "lacks pg_ctl, postgres, psql") || !strings.Contains(err.Error(), "'make deps' installs postgresql") {
		t.Errorf("only initdb: %v", err)
	}
}

func TestDBName(t *testing.T) {
	for _, c := range []struct {
		test string
		seq  int64
		want string
	}{
		{"TestX", 1, "t1_testx"},
		{"TestPg/sub test#01", 12, "t12_testpg_sub_test_01"},
		{strings.Repeat("A", 100), 7, "t7_" + strings.Repeat("a", 40)},
	} {
		if got := dbName(c.test, c.seq); got != c.want {
			t.Errorf("dbName(%q, %d) = %q, want %q", c.test, c.seq, got, c.want)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	if compareVersions("9.6", "15") >= 0 || compareVersions("16", "15") <= 0 || compareVersions("15", "15") != 0 {
		t.Error("compareVersions orders 9.6 < 15 < 16 wrongly")
	}
}

package powercut_test

import (
	"errors"
	"testing"

	"github.com/ringfence/ringfence/internal/failpoint"
	"github.com/ringfence/ringfence/internal/lazyfs"
	"github.com/ringfence/ringfence/powercut"
)

// neededSyncs are the syncs the install path, the loader and the server keep, each with
// the scenario whose cuts break an invariant when it is left out
// (failpoint.EnvSkip): docs/boot-record.md's table of syncs.
var neededSyncs = []struct {
	skip, scenario, what string
}{
	{"bootguard/sync#1", "install-over-old-good", "the claim: the record write that makes the slot EMPTY before its files change"},
	{"atomicfile/sync", "install", "the slot's files (content and manifest), renamed into the claimed slot and synced together"},
	{"atomicfile/dirsync", "install", "the slot directory, once, after the files' syncs"},
	{"bootguard/sync#2", "install-over-old-good", "the record write that puts the slot on trial"},
	{"hostdb/sync", "revert-then-install", "state.db's commit (bbolt's two syncs) of the quarantine, before the next stage claims the reverted slot"},
	{"bootguard/sync", "boot-trial", "the loader's LOADING breadcrumb, before the load"},
	{"fleetdb/sync", "signed-rollback", "server.db's commit (bbolt's two syncs) of the gate's decision, before the rollback is signed and the batch acknowledged"},
	{"atomicfile/dirsync", "publish", "the repository's directory after each metadata file's rename"},
}

// TestPowerCutNeedsEverySync leaves out each sync the harness keeps and
// requires that some cut then breaks an invariant: the harness can fail,
// and every sync it keeps is needed.
func TestPowerCutNeedsEverySync(t *testing.T) {
	dir := tmp(t)
	byName := map[string]powercut.Scenario{}
	for _, set := range scenarioSets {
		for _, sc := range set() {
			byName[sc.Name] = sc
		}
	}
	for _, s := range neededSyncs {
		t.Run(s.skip+" in "+s.scenario, func(t *testing.T) {
			sc, ok := byName[s.scenario]
			if !ok {
				t.Fatalf("no scenario %q", s.scenario)
			}
			res, err := powercut.Run(dir, sc, powercut.Options{Seed: 1, MaxFailures: 1, Env: []string{failpoint.EnvSkip + "=" + s.skip}})
			if errors.Is(err, lazyfs.ErrNoFUSE) {
				t.Skipf("SKIPPED: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Failures) == 0 {
				t.Fatalf("without %s (%s), every cut of %s still held every invariant: the sync is not needed, or the harness misses what it guards", s.skip, s.what, s.scenario)
			}
			t.Logf("powercut: without %s (%s): %s", s.skip, s.what, res.Failures[0])
		})
	}
}

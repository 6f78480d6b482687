package powercut_test

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/lazyfs"
	"github.com/ringfence/ringfence/powercut"
)

// EnvRun must be set for the power-cut tests to run: they mount FUSE file
// systems (make test-powercut sets it, and says why they skip where they
// cannot run).
const EnvRun = "RINGFENCE_POWERCUT"

// tmp is where the harness mounts and materializes: /dev/shm when there is
// one (every state is written out, checked and removed).
func tmp(t *testing.T) string {
	t.Helper()
	if os.Getenv(EnvRun) == "" {
		t.Skipf("SKIPPED: the power-cut harness runs with %s=1 (make test-powercut)", EnvRun)
	}
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "powercut-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// runAll runs each scenario and reports its cut points and states; every
// invariant must hold at every one.
func runAll(t *testing.T, scenarios []powercut.Scenario) {
	dir := tmp(t)
	total := powercut.Result{}
	for _, sc := range scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			res, err := powercut.Run(dir, sc, powercut.Options{Seed: 1})
			if errors.Is(err, lazyfs.ErrNoFUSE) {
				t.Skipf("SKIPPED: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range res.Failures {
				t.Error(f)
			}
			if len(res.Failures) == 0 {
				t.Logf("powercut: %s: %v: every invariant held", sc.Name, res)
			}
			total.Changes += res.Changes
			total.Syncs += res.Syncs
			total.CutPoints += res.CutPoints
			total.States += res.States
		})
	}
	t.Logf("powercut: %d operations: %v", len(scenarios), total)
}

// scenarioSets are the scenarios of every test file, for the child
// processes (powercut.Main); each file adds its own in init.
var scenarioSets []func() []powercut.Scenario

func init() {
	scenarioSets = append(scenarioSets, func() []powercut.Scenario { return hostScenarios(newHost()) })
}

func TestMain(m *testing.M) {
	if os.Getenv("RINGFENCE_POWERCUT_CHILD") != "" {
		var all [][]powercut.Scenario
		for _, set := range scenarioSets {
			all = append(all, set())
		}
		powercut.Main(all...)
	}
	os.Exit(m.Run())
}

func TestPowerCutHost(t *testing.T) {
	runAll(t, hostScenarios(newHost()))
}

func hostScenarios(h *host) []powercut.Scenario {
	none := func(string) error { return nil }
	goodV1 := func(root string) error { return h.with(root, h.good(v1)) }
	return []powercut.Scenario{
		{
			Name:  "first-install",
			Setup: none,
			Run: func(root string, _ func(string)) error {
				return h.with(root, func(in *installer.Installer) error { _, err := h.install(in, v1); return err })
			},
			Check: h.checkHost(expect{before: 0, after: v1, final: v1, finalState: bootguard.StateTrial}),
		},
		{
			Name:  "install",
			Setup: goodV1,
			Run: func(root string, _ func(string)) error {
				return h.with(root, func(in *installer.Installer) error { _, err := h.install(in, v2); return err })
			},
			Check: h.checkHost(expect{before: v1, after: v2, final: v2, finalState: bootguard.StateTrial}),
		},
		{
			// The slot staged into still holds an older good version (not
			// the fallback): it must be claimed before its files change.
			Name: "install-over-old-good",
			Setup: func(root string) error {
				return h.with(root, func(in *installer.Installer) error {
					if err := h.good(v1)(in); err != nil {
						return err
					}
					return h.good(v2)(in)
				})
			},
			Run: func(root string, _ func(string)) error {
				return h.with(root, func(in *installer.Installer) error { _, err := h.install(in, v3); return err })
			},
			Check: h.checkHost(expect{before: v2, after: v3, also: []uint32{v1}, final: v3, finalState: bootguard.StateTrial}),
		},
		{
			// Channel 291's new version arrives while 292 is in its trial:
			// it is staged and waits (one trial at a time per host).
			Name: "install-while-other-channel-in-trial",
			Setup: func(root string) error {
				return h.with(root, func(in *installer.Installer) error {
					if err := h.good(v1)(in); err != nil {
						return err
					}
					if err := h.good(v1 + 1000)(in); err != nil {
						return err
					}
					_, err := h.install(in, v2+1000)
					return err
				})
			},
			Run: func(root string, _ func(string)) error {
				return h.with(root, func(in *installer.Installer) error {
					_, err := h.install(in, v2)
					if errors.Is(err, installer.ErrTrialRunning) {
						return nil
					}
					return fmt.Errorf("want ErrTrialRunning, got %v", err)
				})
			},
			Check: h.checkHost(expect{before: v1, after: v2, final: v1, finalState: bootguard.StateGood}),
		},
		{
			Name:  "stage",
			Setup: goodV1,
			Run: func(root string, _ func(string)) error {
				return h.with(root, func(in *installer.Installer) error {
					return h.stage(in, v2)
				})
			},
			Check: h.checkHost(expect{before: v1, after: v2, final: v1, finalState: bootguard.StateGood}),
		},
		{
			Name: "activate",
			Setup: func(root string) error {
				return h.with(root, func(in *installer.Installer) error {
					if err := h.good(v1)(in); err != nil {
						return err
					}
					return h.stage(in, v2)
				})
			},
			Run: func(root string, _ func(string)) error {
				return h.on291(root, func(c *installer.Installer) error {
					rec, err := bootguard.Read(c.RecordPath())
					if err != nil {
						return err
					}
					_, err = c.Activate(rec.Active.Other())
					return err
				})
			},
			Check: h.checkHost(expect{before: v1, after: v2, final: v2, finalState: bootguard.StateTrial}),
		},
		{
			// The loader's boot of a trial: select (breadcrumb LOADING),
			// verify, load, first events, LOADED.
			Name:  "boot-trial",
			Setup: h.trial(false),
			Run: func(root string, mark func(string)) error {
				return h.on291(root, func(c *installer.Installer) error {
					res, err := c.Boot(false)
					if err != nil {
						return err
					}
					if res.Decision.Entry.Version != v2 {
						return fmt.Errorf("boot chose %v", res.Decision)
					}
					mark("loading")
					return bootguard.MarkLoaded(c.RecordPath())
				})
			},
			Check: h.checkHost(expect{before: v1, after: v2, loading: "loading", final: v2, finalState: bootguard.StateTrial}),
		},
		{
			// The boot after a crash while loading the trial: the guard
			// reverts it and falls back to last-known-good.
			Name: "boot-after-load-crash",
			Setup: func(root string) error {
				if err := h.trial(false)(root); err != nil {
					return err
				}
				return h.on291(root, func(c *installer.Installer) error {
					_, err := c.Boot(false) // the load "crashes": LOADING stays
					return err
				})
			},
			Run: func(root string, _ func(string)) error {
				return h.on291(root, func(c *installer.Installer) error {
					res, err := c.Boot(true)
					if err == nil && res.Decision.Entry.Version != v1 {
						err = fmt.Errorf("boot chose %v", res.Decision)
					}
					return err
				})
			},
			Check: h.checkHost(expect{before: v1, after: v2, never: []uint32{v2}, final: v1, finalState: bootguard.StateGood}),
		},
		{
			Name:  "mark-good",
			Setup: h.trial(true),
			Run: func(root string, _ func(string)) error {
				return h.on291(root, func(c *installer.Installer) error {
					_, err := c.MarkGood()
					return err
				})
			},
			Check: h.checkHost(expect{before: v1, after: v2, promotes: true, final: v2, finalState: bootguard.StateGood}),
		},
		{
			// A revert, then its report: from the report on, the version
			// must stay quarantined.
			Name:  "revert",
			Setup: h.trial(true),
			Run: func(root string, mark func(string)) error {
				return h.on291(root, func(c *installer.Installer) error {
					_, err := c.Revert(bootguard.ReasonHealthFailed)
					mark("reported")
					return err
				})
			},
			Check: h.checkHost(expect{before: v1, after: v2, final: v1, finalState: bootguard.StateGood, quarantined: func(c powercut.Cut) []uint32 {
				if c.Passed("reported") {
					return []uint32{v2}
				}
				return nil
			}}),
		},
		{
			// The daemon's path after a failed health window: revert,
			// report, and at a later poll install the next version into
			// the reverted version's slot. Once reported, the reverted
			// version stays quarantined through every cut.
			Name:  "revert-then-install",
			Setup: h.trial(true),
			Run: func(root string, mark func(string)) error {
				return h.on291(root, func(c *installer.Installer) error {
					if _, err := c.Revert(bootguard.ReasonHealthFailed); err != nil {
						return err
					}
					mark("reported")
					_, err := h.install(c, v3)
					return err
				})
			},
			Check: h.checkHost(expect{before: v1, after: v3, also: []uint32{v2}, neverAfter: map[string][]uint32{"reported": {v2}},
				final: v3, finalState: bootguard.StateTrial,
				quarantined: func(c powercut.Cut) []uint32 {
					if c.Passed("reported") {
						return []uint32{v2}
					}
					return nil
				}}),
		},
		{
			// The next version is staged into the reverted version's slot:
			// the record's BAD entry goes, the quarantine must not.
			Name: "install-over-reverted",
			Setup: func(root string) error {
				if err := h.trial(true)(root); err != nil {
					return err
				}
				return h.on291(root, func(c *installer.Installer) error {
					_, err := c.Revert(bootguard.ReasonHealthFailed)
					return err
				})
			},
			Run: func(root string, _ func(string)) error {
				return h.with(root, func(in *installer.Installer) error { _, err := h.install(in, v3); return err })
			},
			Check: h.checkHost(expect{before: v1, after: v3, never: []uint32{v2}, final: v3, finalState: bootguard.StateTrial,
				quarantined: func(powercut.Cut) []uint32 { return []uint32{v2} }}),
		},
		{
			Name:  "recover",
			Setup: h.trial(true),
			Run: func(root string, _ func(string)) error {
				return h.on291(root, func(c *installer.Installer) error {
					_, err := c.Recover(installer.TargetLastGood, false)
					return err
				})
			},
			Check: h.checkHost(expect{before: v1, after: v2, final: v1, finalState: bootguard.StateGood}),
		},
		{
			Name: "recover-rebuild",
			Setup: func(root string) error {
				return h.with(root, func(in *installer.Installer) error {
					if err := h.good(v1)(in); err != nil {
						return err
					}
					if err := h.good(v2)(in); err != nil {
						return err
					}
					c, err := in.Channel(291)
					if err != nil {
						return err
					}
					return os.WriteFile(c.RecordPath(), make([]byte, bootguard.FileSize), 0o600)
				})
			},
			Run: func(root string, _ func(string)) error {
				return h.on291(root, func(c *installer.Installer) error {
					_, err := c.Recover(installer.TargetLastGood, false)
					return err
				})
			},
			Check: h.checkHost(expect{before: v1, after: v2, promotes: true, fromSafeMode: true, final: v2, finalState: bootguard.StateGood}),
		},
	}
}

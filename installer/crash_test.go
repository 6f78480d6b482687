package installer_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/failpoint"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/validator"
)

// Environment of a crash child: the operation to run and the root to run it on.
const (
	envCrashOp   = "RINGFENCE_TEST_CRASH_OP"
	envCrashRoot = "RINGFENCE_TEST_CRASH_ROOT"
)

func TestMain(m *testing.M) {
	if op := os.Getenv(envCrashOp); op != "" {
		if err := runCrashOp(op, os.Getenv(envCrashRoot)); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashOp is one durable operation of the installer, with the state it
// starts from.
type crashOp struct {
	name  string
	setup func(t *testing.T, in *installer.Installer)
	run   func(in *installer.Installer) error
	// before and after are the versions that may load after a crash: the
	// last-known-good before the operation (0: nothing) and the new one.
	before, after uint32
	// promotes is true for the operation that may turn the trial GOOD.
	promotes bool
	// fromSafeMode is true when the operation starts from a record with no
	// valid copy: a crash may leave it so.
	fromSafeMode bool
	// channel is the channel the operation acts on in a root of several
	// (0: a root of one); others are channels whose boot records must come
	// out of any crash byte for byte as they were.
	channel uint32
	others  []uint32
}

var crashOps = []crashOp{
	{
		name:  "first-install",
		setup: func(*testing.T, *installer.Installer) {},
		run: func(in *installer.Installer) error {
			_, _, err := in.Install(mustRead("good-ipc-1001"), installer.StageOptions{})
			return err
		},
		before: 0, after: 1001,
	},
	{
		name:  "install",
		setup: func(t *testing.T, in *installer.Installer) { goodOn(t, in, "good-ipc-1001") },
		run: func(in *installer.Installer) error {
			_, _, err := in.Install(mustRead("good-ipc-1002"), installer.StageOptions{})
			return err
		},
		before: 1001, after: 1002,
	},
	{
		name:  "boot-trial",
		setup: trialOf1002(false),
		run: func(in *installer.Installer) error {
			_, err := in.Boot(true)
			return err
		},
		before: 1001, after: 1002,
	},
	{
		name: "boot-after-load-crash",
		setup: func(t *testing.T, in *installer.Installer) {
			trialOf1002(false)(t, in)
			_, err := in.Boot(false) // the load "crashes": breadcrumb stays LOADING
			require.NoError(t, err)
		},
		run: func(in *installer.Installer) error {
			_, err := in.Boot(true)
			return err
		},
		before: 1001, after: 1002,
	},
	{
		name:  "mark-good",
		setup: trialOf1002(true),
		run: func(in *installer.Installer) error {
			_, err := in.MarkGood()
			return err
		},
		before: 1001, after: 1002, promotes: true,
	},
	{
		name:  "revert",
		setup: trialOf1002(true),
		run: func(in *installer.Installer) error {
			_, err := in.Revert(bootguard.ReasonHealthFailed)
			return err
		},
		before: 1001, after: 1002,
	},
	{
		name:  "recover",
		setup: trialOf1002(true),
		run: func(in *installer.Installer) error {
			_, err := in.Recover(installer.TargetLastGood, false)
			return err
		},
		before: 1001, after: 1002,
	},
	{
		name: "recover-rebuild",
		setup: func(t *testing.T, in *installer.Installer) {
			goodOn(t, in, "good-ipc-1001")
			goodOn(t, in, "good-ipc-1002")
			require.NoError(t, os.WriteFile(in.RecordPath(), make([]byte, bootguard.FileSize), 0o600))
		},
		run: func(in *installer.Installer) error {
			_, err := in.Recover(installer.TargetLastGood, false)
			return err
		},
		before: 1001, after: 1002, promotes: true, fromSafeMode: true,
	},
	{
		// Channel 291's new version arrives while 292 is in its trial: it is
		// staged and waits (ErrTrialRunning); a kill anywhere leaves 291 on
		// 1001 and 292's trial as it was.
		name:  "install-while-other-channel-in-trial",
		setup: trialOn292,
		run: func(in *installer.Installer) error {
			_, _, err := in.Install(mustRead("good-ipc-1002"), installer.StageOptions{})
			if errors.Is(err, installer.ErrTrialRunning) {
				return nil
			}
			return fmt.Errorf("want ErrTrialRunning, got %v", err)
		},
		before: 1001, after: 1002, channel: 291, others: []uint32{292, 293},
	},
	{
		// A root of the single-channel layout is converted by Open, then
		// boots: a kill during the conversion is finished by the next Open.
		name: "migrate-legacy-root",
		setup: func(t *testing.T, in *installer.Installer) {
			trialOf1002(true)(t, in)
			root, dir := in.Root(), filepath.Dir(in.RecordPath())
			require.NoError(t, os.Rename(filepath.Join(dir, installer.SlotsDir), filepath.Join(root, installer.SlotsDir)))
			require.NoError(t, os.Rename(in.RecordPath(), filepath.Join(root, installer.RecordName)))
			require.NoError(t, testtmp.RemoveAll(filepath.Join(root, installer.ChannelsDir)))
		},
		run: func(in *installer.Installer) error {
			_, err := in.Boot(true)
			return err
		},
		before: 1001, after: 1002,
	},
	{
		// The loader boots every channel in order; 292's trial crashed while
		// loading at the last boot.
		name: "boot-channels-after-load-crash",
		setup: func(t *testing.T, in *installer.Installer) {
			trialOn292(t, in)
			_, err := channel(t, in, 292).Boot(false)
			require.NoError(t, err)
		},
		run: func(in *installer.Installer) error {
			for _, ch := range in.Channels() {
				c, err := in.Channel(ch)
				if err != nil {
					return err
				}
				if _, err := c.Boot(true); err != nil {
					return err
				}
			}
			return nil
		},
		before: 2001, after: 2002, channel: 292, others: []uint32{291, 293},
	},
}

// trialOn292 makes a root of three channels: 291 and 293 good, 292 in the
// trial of 2002 over 2001.
func trialOn292(t *testing.T, in *installer.Installer) {
	goodData(t, in, mustRead("good-ipc-1001"))
	goodData(t, in, onChannel(t, "good-ipc-1001", 292, 2001))
	goodData(t, in, onChannel(t, "good-ipc-1001", 293, 3001))
	_, _, err := in.Install(onChannel(t, "good-ipc-1002", 292, 2002), installer.StageOptions{})
	require.NoError(t, err)
}

func trialOf1002(loaded bool) func(t *testing.T, in *installer.Installer) {
	return func(t *testing.T, in *installer.Installer) {
		goodOn(t, in, "good-ipc-1001")
		_, _, err := in.Install(content(t, "good-ipc-1002"), installer.StageOptions{})
		require.NoError(t, err)
		if loaded {
			_, err := in.Boot(true)
			require.NoError(t, err)
		}
	}
}

func mustRead(name string) []byte {
	b, err := os.ReadFile(filepath.Join("..", "testdata", "channels", name+".rfch"))
	if err != nil {
		panic(err)
	}
	return b
}

func runCrashOp(name, root string) error {
	caps, err := validator.LoadCapabilities(filepath.Join("..", "testdata", "capabilities", "sensor-7.11.json"))
	if err != nil {
		return err
	}
	in, err := installer.Open(root, installer.Options{Capabilities: caps})
	if err != nil {
		return err
	}
	defer in.Close()
	for _, op := range crashOps {
		if op.name == name {
			return op.run(in)
		}
	}
	return fmt.Errorf("unknown operation %q", name)
}

// TestCrashPoints runs every operation in a child process killed at each
// failpoint it passes in turn (SIGKILL: nothing after that point runs), then
// checks the invariants on what the crash left on disk.
func TestCrashPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process per crash point")
	}
	total := 0
	for _, op := range crashOps {
		t.Run(op.name, func(t *testing.T) {
			points := tracePoints(t, op)
			require.NotEmpty(t, points)
			for i, fp := range points {
				root := prepared(t, op)
				others := records(t, root, op.others)
				out, err := runChild(root, op.name, failpoint.EnvKill+"="+fp)
				require.Error(t, err, "child was not killed at %s:\n%s", fp, out)
				require.NotContains(t, string(out), "panic", "child at %s", fp)
				where := fmt.Sprintf("%s #%d %s", op.name, i+1, fp)
				for ch, b := range records(t, root, op.others) {
					require.Equal(t, others[ch], b, "%s: channel %d's record changed", where, ch)
				}
				checkInvariants(t, op, root, where)
			}
			total += len(points)
			t.Logf("%s: %d crash points: %s", op.name, len(points), strings.Join(points, ", "))
		})
	}
	t.Logf("crash points exercised: %d over %d operations", total, len(crashOps))
}

// records reads the boot records of channels in root.
func records(t *testing.T, root string, channels []uint32) map[uint32][]byte {
	out := map[uint32][]byte{}
	for _, ch := range channels {
		b, err := os.ReadFile(filepath.Join(root, installer.ChannelsDir, fmt.Sprint(ch), installer.RecordName))
		require.NoError(t, err)
		out[ch] = b
	}
	return out
}

// prepared returns a fresh root in the state op starts from.
func prepared(t *testing.T, op crashOp) string {
	root := testtmp.Dir(t)
	in := open(t, root)
	op.setup(t, in)
	require.NoError(t, in.Close())
	return root
}

// tracePoints runs op once with tracing and returns its failpoints in order,
// as the kill settings that land on each: "NAME" for the first hit of a
// name, "NAME#N" for the Nth (the atomicfile steps of the second file
// written, say).
func tracePoints(t *testing.T, op crashOp) []string {
	root := prepared(t, op)
	out, err := runChild(root, op.name, failpoint.EnvTrace+"=1")
	require.NoError(t, err, "%s", out)
	var points []string
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if name, ok := strings.CutPrefix(sc.Text(), failpoint.TracePrefix); ok {
			seen[name]++
			if seen[name] == 1 {
				points = append(points, name)
			} else {
				points = append(points, fmt.Sprintf("%s#%d", name, seen[name]))
			}
		}
	}
	return points
}

func runChild(root, op string, env ...string) ([]byte, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envCrashOp+"="+op, envCrashRoot+"="+root)
	cmd.Env = append(cmd.Env, env...)
	return cmd.CombinedOutput()
}

// checkInvariants: the boot record is valid; the slot it loads is intact and
// holds the old last-known-good or the new content, never neither; a trial
// is never promoted except by MarkGood; no temporary file survives Open; and
// the host goes on: the next boot loads verified content.
func checkInvariants(t *testing.T, op crashOp, root, where string) {
	in := open(t, root)
	if op.channel != 0 {
		in = channel(t, in, op.channel)
	}
	rec, err := bootguard.Read(in.RecordPath())
	if op.fromSafeMode && err != nil {
		// The crash came before the new record was complete: still in
		// safe mode, and running the recovery again gets out of it.
		require.ErrorIs(t, err, bootguard.ErrNoValidCopy, "%s", where)
		_, rerr := in.Recover(installer.TargetLastGood, false)
		require.NoError(t, rerr, "%s: recover again", where)
		rec, err = bootguard.Read(in.RecordPath())
	}
	require.NoError(t, err, "%s: boot record", where)
	d := bootguard.Decide(rec, true)
	if op.before == 0 {
		require.Contains(t, []uint32{0, op.after}, d.Entry.Version, "%s: %v", where, d)
	} else {
		require.Equal(t, bootguard.ActionLoad, d.Action, "%s: %v", where, d)
		require.Contains(t, []uint32{op.before, op.after}, d.Entry.Version, "%s: %v", where, d)
	}
	if d.Action == bootguard.ActionLoad {
		_, err := installer.VerifySlot(in.SlotDir(d.Slot), d.Entry.Digest)
		require.NoError(t, err, "%s: slot %v", where, d.Slot)
	}
	if !op.promotes {
		for _, s := range []bootguard.Slot{bootguard.SlotA, bootguard.SlotB} {
			if e := rec.Entry(s); e.Version == op.after {
				require.NotEqual(t, bootguard.StateGood, e.State, "%s: trial promoted without a health window", where)
			}
		}
	}
	for _, s := range []bootguard.Slot{bootguard.SlotA, bootguard.SlotB} {
		ents, err := os.ReadDir(in.SlotDir(s))
		require.NoError(t, err)
		for _, e := range ents {
			require.NotContains(t, e.Name(), ".tmp-", "%s: leftover in slot %v", where, s)
		}
	}
	res, err := in.Boot(true)
	require.NoError(t, err, "%s: boot after the crash", where)
	for _, n := range res.Notes {
		require.NotContains(t, n, "failed verification", "%s: after the crash", where)
	}
	if op.before != 0 {
		require.Equal(t, bootguard.ActionLoad, res.Decision.Action, "%s", where)
	}
}

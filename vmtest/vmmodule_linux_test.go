package vmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/lazyfs"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/loader"
	"github.com/ringfence/ringfence/powercut"
	"github.com/ringfence/ringfence/sensor"
)

// moduleArgs make the reference kernel agent the guest's only loader, with
// panic_on_oops (oops=panic): a fault in the agent takes the host down, as
// it did in July 2024.
// recordingName is where vmtest/guest leaves the recording of the module's
// load (rfvm.lazyfs=1), at the top of the state disk.
const recordingName = "rfvm-recording.gob"

var moduleArgs = []string{"rfvm.loader=module", "oops=panic", "rfguard.seed=7"}

// moduleGuest skips unless the test has a module to pack.
func moduleGuest(t *testing.T) guest {
	t.Helper()
	tools(t)
	if os.Getenv(EnvModule) == "" {
		t.Skipf("%s is not set: run 'make test-vm', which builds kmod/ against Debian's headers for the guest's kernel (kmod/build.sh)", EnvModule)
	}
	return buildGuest(t)
}

// oopsRIP finds the faulting instruction of a kernel oops on the console:
// "RIP: 0010:<function>+0x<off>/0x<len> [<module>]".
var oopsRIP = regexp.MustCompile(`RIP: 0010:([A-Za-z_][A-Za-z0-9_.]*)\+0x[0-9a-f]+/0x[0-9a-f]+ \[([a-z_]+)\]`)

// interpreterFunctions are the functions sensor/c/rfinterp.c defines: an
// oops whose RIP is in one of them is a fault in the interpreter itself.
func interpreterFunctions(t *testing.T) map[string]bool {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "sensor", "c", "rfinterp.c"))
	require.NoError(t, err)
	defs := regexp.MustCompile(`(?m)^(?:static\s+)?(?:const\s+)?[a-z_][a-z0-9_ ]*[\s*]([a-z_][a-z0-9_]*)\([^;{]*\)\s*\{`)
	out := map[string]bool{}
	for _, m := range defs.FindAllSubmatch(src, -1) {
		out[string(m[1])] = true
	}
	require.NotEmpty(t, out, "no function definitions found in rfinterp.c")
	return out
}

// TestVMModule boots the guest with the kernel module as the only loader:
// the loader contract, the slot verification, the interpreter and the
// breadcrumbs all run in kernel space, with no user space to help.
func TestVMModule(t *testing.T) {
	g := moduleGuest(t)

	// A good trial: the module loads it, its first events pass, LOADED is
	// on disk, and the kernel never panics.
	t.Run("good", func(t *testing.T) {
		t.Parallel()
		img := stateDisk(t, "7.11", "good-ipc-1001", "good-ipc-1002")
		b := boot(t, g, img, moduleArgs...)
		requireExit(t, b, 0)
		require.NotNil(t, b.result, b.console)
		require.Equal(t, uint32(1002), b.result.Version)
		require.Equal(t, string(bootguard.WhyTrial), b.result.Why)
		require.True(t, b.result.Loaded)
		require.Greater(t, b.result.Events, 200, "the synthesized events and 200 random ones")
		require.NotContains(t, b.console, "Kernel panic")

		r := readDisk(t, img).pick(t)
		e := r.Entry(r.Active)
		require.Equal(t, uint32(1002), e.Version)
		require.Equal(t, bootguard.StateTrial, e.State)
		require.Equal(t, bootguard.CrumbLoaded, e.Crumb)
	})

	// The 2024 case, in a kernel: content installed for a 7.12 sensor (21
	// IPC fields) on the legacy 20-input build. Boot 1: the module's
	// interpreter reads the pointer past its input array and the kernel
	// oopses inside the interpreter, then panics (panic_on_oops, pvpanic).
	// Boot 2: the module's guard falls back to last-known-good before it
	// loads anything.
	t.Run("crash-loop", func(t *testing.T) {
		t.Parallel()
		img := stateDisk(t, "7.12", "good-ipc-1001", "cf291-shape")
		trial := readDisk(t, img).pick(t)
		bad := trial.Entry(trial.Active).Version

		b1 := boot(t, g, img, moduleArgs...)
		requireExit(t, b1, 1)
		require.Nil(t, b1.result)
		m := oopsRIP.FindStringSubmatch(b1.console)
		require.NotNil(t, m, "no oops RIP on the console:\n%s", b1.console)
		require.Equal(t, "rfguard", m[2], "the fault is not in the module")
		require.True(t, interpreterFunctions(t)[m[1]], "the faulting function %s is not the interpreter's (sensor/c/rfinterp.c)", m[1])
		require.Regexp(t, `BUG: kernel NULL pointer dereference|general protection fault|BUG: unable to handle page fault`, b1.console)
		require.Contains(t, b1.console, "Kernel panic - not syncing: Fatal exception")
		r := readDisk(t, img).pick(t)
		require.Equal(t, bootguard.CrumbLoading, r.Entry(r.Active).Crumb, "the oops left the load unfinished on disk")

		b2 := boot(t, g, img, moduleArgs...)
		requireExit(t, b2, 0)
		require.NotNil(t, b2.result, b2.console)
		require.Equal(t, string(bootguard.WhyLoadCrash), b2.result.Why)
		require.Equal(t, uint32(1001), b2.result.Version)
		require.True(t, b2.result.Loaded)

		d := readDisk(t, img)
		r = d.pick(t)
		require.Equal(t, uint32(1001), r.Entry(r.Active).Version)
		require.Equal(t, bootguard.StateGood, r.Entry(r.Active).State)
		other := r.Entry(3 - r.Active)
		require.Equal(t, bad, other.Version)
		require.Equal(t, bootguard.StateBad, other.State)
		require.Equal(t, bootguard.ReasonLoadCrash, other.Reason)
		// No user space ran on either boot: the installer's first open
		// afterwards (the daemon's, at its next start) reads the BAD entry
		// the module left and quarantines the version.
		in, err := installer.Open(d.root, installer.Options{Capabilities: testfiles.Capabilities(t, "7.11")})
		require.NoError(t, err)
		defer in.Close()
		q, err := in.Quarantined()
		require.NoError(t, err)
		require.Len(t, q, 1)
		require.Equal(t, bad, q[0].Version, "the user-space installer must quarantine the version the kernel crashed on")
		require.Equal(t, bootguard.ReasonLoadCrash.String(), q[0].Reason)
	})

	// A clean stop: the agent is unloaded after the load, and its exit
	// records the breadcrumb STOPPED; the next start loads the trial again
	// without spending a try.
	t.Run("clean-stop", func(t *testing.T) {
		t.Parallel()
		img := stateDisk(t, "7.11", "good-ipc-1001", "good-ipc-1002")
		before := readDisk(t, img).pick(t)

		b1 := boot(t, g, img, append([]string{"rfvm.unload=1"}, moduleArgs...)...)
		requireExit(t, b1, 0)
		require.NotNil(t, b1.result, b1.console)
		require.True(t, b1.result.Loaded)
		require.Contains(t, b1.console, "the kernel agent stopped cleanly")
		r1 := readDisk(t, img).pick(t)
		e1 := r1.Entry(r1.Active)
		require.Equal(t, bootguard.CrumbStopped, e1.Crumb)
		require.Equal(t, before.Seq+3, r1.Seq, "LOADING, LOADED, STOPPED")

		b2 := boot(t, g, img, moduleArgs...)
		requireExit(t, b2, 0)
		require.NotNil(t, b2.result, b2.console)
		require.Equal(t, uint32(1002), b2.result.Version)
		require.True(t, b2.result.Loaded)
		r2 := readDisk(t, img).pick(t)
		e2 := r2.Entry(r2.Active)
		require.Equal(t, bootguard.CrumbLoaded, e2.Crumb)
		require.Equal(t, e1.Tries, e2.Tries, "a start after a clean stop spends no try")
	})

	// Two channels, given out of order: the module loads 291 (GOOD) first,
	// then 292, whose trial is the 2024 content on channel 292. Boot 1: 292
	// oopses after 291 loaded. Boot 2: 291 as before, 292 back on its
	// last-known-good; 291's record never changed.
	t.Run("two-channels", func(t *testing.T) {
		t.Parallel()
		img := channelsDisk(t)
		before := readRecord(t, img, 291)

		b1 := boot(t, g, img, append([]string{"rfguard.channels=292,291"}, moduleArgs...)...)
		requireExit(t, b1, 1)
		require.Regexp(t, oopsRIP, b1.console)
		r := pickRecord(t, readRecord(t, img, 292))
		require.Equal(t, bootguard.CrumbLoading, r.Entry(r.Active).Crumb)

		b2 := boot(t, g, img, append([]string{"rfguard.channels=292,291"}, moduleArgs...)...)
		requireExit(t, b2, 0)
		require.Len(t, b2.results, 2, b2.console)
		require.Equal(t, uint32(291), b2.results[0].Channel, "ascending order")
		require.Equal(t, uint32(1001), b2.results[0].Version)
		require.Equal(t, string(bootguard.WhyGood), b2.results[0].Why)
		require.Equal(t, uint32(292), b2.results[1].Channel)
		require.Equal(t, uint32(2001), b2.results[1].Version)
		require.Equal(t, string(bootguard.WhyLoadCrash), b2.results[1].Why)
		require.True(t, b2.results[1].Loaded)

		require.Equal(t, before, readRecord(t, img, 291), "channel 291's record is untouched: GOOD content loads without a write")
		r = pickRecord(t, readRecord(t, img, 292))
		other := r.Entry(3 - r.Active)
		require.Equal(t, uint32(2004), other.Version)
		require.Equal(t, bootguard.StateBad, other.State)
		require.Equal(t, bootguard.ReasonLoadCrash, other.Reason)
	})

	// A torn record write from the module: it writes half of the next copy,
	// flushes it and panics. The other copy still holds the record from
	// before; the next boot decides from it and goes on.
	t.Run("torn-record", func(t *testing.T) {
		t.Parallel()
		img := stateDisk(t, "7.11", "good-ipc-1001", "good-ipc-1002")
		before := readDisk(t, img).pick(t)

		b1 := boot(t, g, img, append([]string{"rfguard.failpoint=torn-write"}, moduleArgs...)...)
		requireExit(t, b1, 1)
		require.Contains(t, b1.console, "rfguard: failpoint torn-write")
		d := readDisk(t, img)
		valid := d.copies(t)
		require.NotEqual(t, valid[0], valid[1], "exactly one copy is torn: %v", valid)
		require.Equal(t, before.Seq, d.pick(t).Seq, "the intact copy is the record from before the write")

		b2 := boot(t, g, img, moduleArgs...)
		requireExit(t, b2, 0)
		require.NotNil(t, b2.result, b2.console)
		require.Equal(t, uint32(1002), b2.result.Version)
		require.True(t, b2.result.Loaded)
		d = readDisk(t, img)
		require.Equal(t, [2]bool{true, true}, d.copies(t))
		r := d.pick(t)
		require.Equal(t, before.Seq+2, r.Seq, "boot 2 wrote LOADING then LOADED")
		require.Equal(t, bootguard.CrumbLoaded, r.Entry(r.Active).Crumb)
	})
}

// TestVMModulePowerCut cuts the power at every point of the module's load:
// the guest serves the state disk's root to the module through a recording
// file system (internal/lazyfs, FUSE in the guest kernel), so every
// kernel_write and vfs_fsync the module makes is recorded; the host then
// checks every state a cut can leave with the power-cut harness: the record
// keeps a valid copy, the next boot loads the old or the new good content
// (the real loader, in Go: the same contract, held to the C by the vectors),
// the breadcrumb LOADING is durable before the module reads any content and
// LOADED once it said so.
//
// The same load with the module's record flushes left out
// (rfguard.failpoint=skip-sync) must fail the check: the test can fail, and
// the flush is needed.
func TestVMModulePowerCut(t *testing.T) {
	g := moduleGuest(t)
	t.Run("flushed", func(t *testing.T) {
		t.Parallel()
		res := modulePowerCut(t, g)
		require.Empty(t, res.Failures)
		require.Equal(t, 2, res.Syncs, "the module flushes the record twice: the trial's breadcrumb, the finished load")
	})
	t.Run("without-flush", func(t *testing.T) {
		t.Parallel()
		res := modulePowerCut(t, g, "rfguard.failpoint=skip-sync")
		require.NotEmpty(t, res.Failures, "a cut after an unflushed record write broke nothing: the check cannot see a missing flush")
		require.Zero(t, res.Syncs)
		t.Logf("as it must, a cut breaks the guard without the flush:\n%s", strings.Join(res.Failures, "\n"))
	})
}

// modulePowerCut boots the module on a recording file system with extra on
// the command line and checks every cut of its load.
func modulePowerCut(t *testing.T, g guest, extra ...string) powercut.Result {
	t.Helper()
	img := stateDisk(t, "7.11", "good-ipc-1001", "good-ipc-1002")
	before := readDisk(t, img).pick(t)
	b := boot(t, g, img, append(append([]string{"rfvm.lazyfs=1"}, extra...), moduleArgs...)...)
	requireExit(t, b, 0)
	require.NotNil(t, b.result, b.console)
	require.True(t, b.result.Loaded, b.console)

	dst := filepath.Join(t.TempDir(), "recording")
	out, err := exec.Command("debugfs", "-R", "dump /"+recordingName+" "+dst, img).CombinedOutput()
	require.NoError(t, err, "debugfs: %s", out)
	f, err := os.Open(dst)
	require.NoError(t, err, "no recording on the disk: %s", out)
	defer f.Close()
	rec, err := lazyfs.DecodeRecording(f)
	require.NoError(t, err)
	for _, m := range []string{"record-written", "loaded-recorded", powercut.MarkDone} {
		require.Contains(t, rec.Marks, m, "the module never passed %s", m)
	}

	sc := powercut.Scenario{Name: "kernel-module-load", Check: func(c powercut.Cut) error {
		var errs powercut.Errors
		recPath := installer.RecordPathOf(c.Root, 291)
		data, err := os.ReadFile(recPath)
		if err != nil {
			return err
		}
		r, _, ok := bootguard.Pick(data)
		if !ok {
			return fmt.Errorf("no valid copy of the boot record")
		}
		e := r.Entry(r.Active)
		switch {
		case e.Version != 1002 || e.State != bootguard.StateTrial:
			errs.Add("the record's active slot is %d %v, want the trial 1002", e.Version, e.State)
		case c.Passed("loaded-recorded") && e.Crumb != bootguard.CrumbLoaded:
			errs.Add("the module recorded the finished load, the disk says %v", e.Crumb)
		case c.Passed("record-written") && e.Crumb != bootguard.CrumbLoading && e.Crumb != bootguard.CrumbLoaded:
			errs.Add("the module read content with the breadcrumb %v on disk (seq %d, was %d)", e.Crumb, r.Seq, before.Seq)
		}
		in, err := installer.Open(c.Root, installer.Options{Capabilities: testfiles.Capabilities(t, "7.11")})
		if err != nil {
			errs.Add("the root does not open: %v", err)
			return errs.Err()
		}
		defer in.Close()
		l, err := loader.Load(in, loader.Options{Capabilities: testfiles.Capabilities(t, "7.11"), Seed: 7})
		switch {
		case err != nil:
			errs.Add("the next boot's load: %v", err)
		case l.Program == nil || !l.Boot.Loaded:
			errs.Add("the next boot loads nothing (%s)", l.Boot.Decision.Why)
		case l.Boot.Decision.Entry.Version != 1001 && l.Boot.Decision.Entry.Version != 1002:
			errs.Add("the next boot loads version %d", l.Boot.Decision.Entry.Version)
		}
		return errs.Err()
	}}
	res, err := powercut.CheckRecording(t.TempDir(), sc, rec, powercut.Options{Seed: 7})
	require.NoError(t, err)
	t.Logf("powercut: %s: %s", sc.Name, res)
	require.Greater(t, res.States, 2)
	return res
}

// channelsDisk is a root of two channels: 291 with 1001 GOOD, 292 with
// 2001 GOOD and the 2024 content (cf291-shape moved to channel 292, version
// 2004) as its trial, installed by an installer that believed the sensor
// was 7.12.
func channelsDisk(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "fs", "ringfence")
	require.NoError(t, os.MkdirAll(root, 0o700))
	in, err := installer.Open(root, installer.Options{Capabilities: testfiles.Capabilities(t, "7.12")})
	require.NoError(t, err)
	for _, c := range []struct {
		ch      uint32
		name    string
		version uint32
		good    bool
	}{{291, "good-ipc-1001", 0, true}, {292, "good-ipc-1001", 2001, true}, {292, "cf291-shape", 2004, false}} {
		_, _, err := in.Install(testfiles.ChannelOn(t, c.name, c.ch, c.version), installer.StageOptions{})
		require.NoError(t, err)
		if c.good {
			ch, err := in.Channel(c.ch)
			require.NoError(t, err)
			_, err = ch.Boot(true)
			require.NoError(t, err)
			_, err = ch.MarkGood()
			require.NoError(t, err)
		}
	}
	require.NoError(t, in.Close())
	img := filepath.Join(dir, "state.img")
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "rfstate", "-d", filepath.Join(dir, "fs"), img, "64M").CombinedOutput()
	require.NoError(t, err, "mkfs.ext4: %s", out)
	return img
}

// readRecord reads channel ch's boot record from the image.
func readRecord(t *testing.T, img string, ch uint32) []byte {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "bootrecord")
	path := "/ringfence/" + installer.ChannelsDir + "/" + strconv.FormatUint(uint64(ch), 10) + "/" + installer.RecordName
	out, err := exec.Command("debugfs", "-R", "dump "+path+" "+dst, img).CombinedOutput()
	require.NoError(t, err, "debugfs: %s", out)
	b, err := os.ReadFile(dst)
	require.NoError(t, err, "debugfs: %s", out)
	return b
}

func pickRecord(t *testing.T, b []byte) bootguard.Record {
	t.Helper()
	r, _, ok := bootguard.Pick(b)
	require.True(t, ok, "no valid copy of the boot record")
	return r
}

// TestModuleCapsMatchSensor holds the kernel agent's table of inputs per
// template type (kmod/main.c) to the 7.11 sensor's capability manifest, the
// build it stands for: the validator decides what content may reach hosts
// from that manifest, so the module must supply exactly what it says.
func TestModuleCapsMatchSensor(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "kmod", "main.c"))
	require.NoError(t, err)
	table := regexp.MustCompile(`(?s)caps\[\] = \{(.*?)\n\};`).FindSubmatch(src)
	require.NotNil(t, table, "kmod/main.c: no caps[] table")
	got := map[uint16]int{}
	for _, m := range regexp.MustCompile(`\{ (\d+), (\d+) \}`).FindAllSubmatch(table[1], -1) {
		id, _ := strconv.Atoi(string(m[1]))
		n, _ := strconv.Atoi(string(m[2]))
		got[uint16(id)] = n
	}
	want := map[uint16]int{}
	caps := sensor.DefaultCapabilities()
	require.Equal(t, "7.11", caps.Sensor)
	for _, tt := range caps.TemplateTypes {
		want[tt.ID] = len(tt.Inputs)
	}
	require.Equal(t, want, got, "kmod/main.c's caps[] and sensor/caps/sensor-7.11.json disagree")
}

// TestModuleSharesSources: the module compiles the boot-record loader and
// the interpreter from their one source each, the files the user-space
// harness and the fuzz suite compile: kmod's wrappers are one #include
// each, Kbuild's include path leads to bootguard/c and sensor/c, and kmod/
// holds no copy of either file.
func TestModuleSharesSources(t *testing.T) {
	comment := regexp.MustCompile(`(?s)/\*.*?\*/|//[^\n]*`)
	for wrapper, shared := range map[string]string{"bootrec.c": "rfbootrec.c", "interp.c": "rfinterp.c"} {
		src, err := os.ReadFile(filepath.Join("..", "kmod", wrapper))
		require.NoError(t, err)
		code := strings.TrimSpace(comment.ReplaceAllString(string(src), ""))
		require.Equal(t, `#include "`+shared+`"`, code, "kmod/%s must only include the shared %s", wrapper, shared)
	}
	kbuild, err := os.ReadFile(filepath.Join("..", "kmod", "Kbuild"))
	require.NoError(t, err)
	require.Contains(t, string(kbuild), "-I$(RFSRC)/bootguard/c")
	require.Contains(t, string(kbuild), "-I$(RFSRC)/sensor/c")
	err = filepath.WalkDir(filepath.Join("..", "kmod"), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n := d.Name(); strings.HasPrefix(n, "rfbootrec") || strings.HasPrefix(n, "rfinterp") {
			t.Errorf("%s: kmod/ must not hold a copy of the shared C sources", path)
		}
		return nil
	})
	require.NoError(t, err)
}

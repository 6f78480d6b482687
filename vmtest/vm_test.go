package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/testbin"
	"github.com/ringfence/ringfence/internal/testfiles"
)

// EnvKernel names the unpacked linux-image package the guest boots.
const EnvKernel = "RINGFENCE_VM_KERNEL"

// EnvModule names the reference kernel agent built for that kernel
// (kmod/build.sh); the guest packs it as /rfguard.ko.
const EnvModule = "RINGFENCE_VM_MODULE"

// guestModules are what the guest needs beyond the built-in kernel: the
// virtio PCI transport and block driver for the state disk, ext4 (crc32c for
// its checksums, which jbd2 asks the crypto API for at mount), the pvpanic
// PCI device through which a panic exits QEMU with status 1, and FUSE for
// the recording file system of the module's power-cut scenario.
var guestModules = []string{"virtio_pci", "virtio_blk", "crc32c_generic", "ext4", "pvpanic_pci", "fuse"}

// bootTimeout bounds one boot; under TCG a boot takes 15-20 s.
const bootTimeout = 3 * time.Minute

func trimKo(s string) string { return strings.TrimSuffix(s, ".ko") }

// kernelDir returns the unpacked kernel package, or skips the test saying
// how to get one.
func kernelDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(EnvKernel)
	if dir == "" {
		t.Skipf("%s is not set: run 'make test-vm', which fetches a Debian kernel (vmtest/kernel.sh) and sets it", EnvKernel)
	}
	return dir
}

// tools returns the host programs the test needs, or skips naming the
// missing ones.
func tools(t *testing.T) {
	t.Helper()
	var missing []string
	for _, p := range []string{"qemu-system-x86_64", "mkfs.ext4", "debugfs"} {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Skipf("missing %s: 'make deps' installs qemu-system-x86 and e2fsprogs", strings.Join(missing, ", "))
	}
}

// guest is what every boot shares: the kernel and the initramfs.
type guest struct {
	kernel    string
	initramfs string
}

var (
	guestOnce sync.Once
	guestVal  guest
	guestErr  error
)

// guestBuild builds the guest init: static, for the guest's linux/amd64.
var guestBuild = testbin.Options{Flags: []string{"-trimpath"}, Env: []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"}}

// buildGuest builds the guest init and packs it with the modules into an
// initramfs, once per test binary.
func buildGuest(t *testing.T) guest {
	t.Helper()
	kdir := kernelDir(t)
	// A linux binary: its name has no .exe, whatever builds it.
	initBin := filepath.Join(testbin.BuildWith(t, guestBuild, "./guest"), "guest")
	guestOnce.Do(func() { guestVal, guestErr = makeGuest(kdir, initBin) })
	require.NoError(t, guestErr)
	return guestVal
}

func makeGuest(kdir, initBin string) (guest, error) {
	kernels, _ := filepath.Glob(filepath.Join(kdir, "boot", "vmlinuz-*"))
	mods, _ := filepath.Glob(filepath.Join(kdir, "lib", "modules", "*"))
	if len(kernels) != 1 || len(mods) != 1 {
		return guest{}, fmt.Errorf("%s: want one boot/vmlinuz-* and one lib/modules/*, found %v and %v", kdir, kernels, mods)
	}
	order, err := Modules(mods[0], guestModules...)
	if err != nil {
		return guest{}, err
	}
	work, err := os.MkdirTemp("", "rfvm-guest-")
	if err != nil {
		return guest{}, err
	}
	var buf bytes.Buffer
	c := NewCPIO(&buf)
	for _, d := range []string{"dev", "proc", "sys", "state", "modules"} {
		if err := c.Dir(d, 0o755); err != nil {
			return guest{}, err
		}
	}
	if err := c.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return guest{}, err
	}
	b, err := os.ReadFile(initBin)
	if err != nil {
		return guest{}, err
	}
	if err := c.File("init", 0o755, b); err != nil {
		return guest{}, err
	}
	if ko := os.Getenv(EnvModule); ko != "" {
		b, err := os.ReadFile(ko)
		if err != nil {
			return guest{}, fmt.Errorf("%s: %w", EnvModule, err)
		}
		if err := c.File("rfguard.ko", 0o644, b); err != nil {
			return guest{}, err
		}
	}
	var names []string
	for _, p := range order {
		b, err := os.ReadFile(p)
		if err != nil {
			return guest{}, err
		}
		if err := c.File("modules/"+filepath.Base(p), 0o644, b); err != nil {
			return guest{}, err
		}
		names = append(names, filepath.Base(p))
	}
	if err := c.File("modules/order", 0o644, []byte(strings.Join(names, "\n")+"\n")); err != nil {
		return guest{}, err
	}
	if err := c.Close(); err != nil {
		return guest{}, err
	}
	initramfs := filepath.Join(work, "initramfs.cpio")
	if err := os.WriteFile(initramfs, buf.Bytes(), 0o644); err != nil {
		return guest{}, err
	}
	return guest{kernel: kernels[0], initramfs: initramfs}, nil
}

// stateDisk prepares a Ringfence root with the host's own installer (the
// first version taken through a healthy trial, the second installed as the
// trial the guest boots into), validating against capsVersion, and makes an
// ext4 image of it.
func stateDisk(t *testing.T, capsVersion, good, trial string, adjust ...func(root string)) string {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "fs", "ringfence")
	require.NoError(t, os.MkdirAll(root, 0o700))
	in, err := installer.Open(root, installer.Options{Capabilities: testfiles.Capabilities(t, capsVersion)})
	require.NoError(t, err)
	_, _, err = in.Install(testfiles.Channel(t, good), installer.StageOptions{})
	require.NoError(t, err)
	_, err = in.Boot(true)
	require.NoError(t, err)
	_, err = in.MarkGood()
	require.NoError(t, err)
	if trial != "" {
		_, _, err = in.Install(testfiles.Channel(t, trial), installer.StageOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, in.Close())
	for _, f := range adjust {
		f(root)
	}
	img := filepath.Join(dir, "state.img")
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "rfstate", "-d", filepath.Join(dir, "fs"), img, "64M").CombinedOutput()
	require.NoError(t, err, "mkfs.ext4: %s", out)
	return img
}

// bootResult is one boot as the host saw it.
type bootResult struct {
	exit    int            // QEMU's exit status: 0 clean poweroff, 1 kernel panic
	console string         // the serial console
	result  *guestResult   // the last channel's
	results []*guestResult // one per channel, in the order loaded
}

// guestResult mirrors the guest's "rfvm-result" line (vmtest/guest).
type guestResult struct {
	Action  string   `json:"action"`
	Slot    string   `json:"slot"`
	Channel uint32   `json:"channel"`
	Version uint32   `json:"version"`
	Why     string   `json:"why"`
	Loaded  bool     `json:"loaded"`
	Events  int      `json:"events"`
	Notes   []string `json:"notes"`
}

// boot runs one QEMU process: one boot of the guest on img. extra is added
// to the kernel command line.
func boot(t *testing.T, g guest, img string, extra ...string) bootResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	cmdline := append([]string{"console=ttyS0", "loglevel=4", "panic=0", "rfvm.seed=7"}, extra...)
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-accel", "tcg", "-m", "256", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
		"-serial", "stdio",
		"-kernel", g.kernel, "-initrd", g.initramfs,
		"-append", strings.Join(cmdline, " "),
		"-drive", "file="+img+",format=raw,if=virtio",
		"-device", "pvpanic-pci",
		"-action", "panic=exit-failure", "-action", "reboot=shutdown",
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	res := bootResult{console: out.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		res.exit = ee.ExitCode()
	default:
		t.Fatalf("qemu: %v (after %v)\nconsole:\n%s", err, took, res.console)
	}
	var story []string // the guest's own lines and the kernel's last words
	sc := bufio.NewScanner(strings.NewReader(res.console))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.Contains(line, "rfvm") || strings.Contains(line, "Kernel panic") || strings.Contains(line, "rfguard") || strings.Contains(line, "RIP: ") || strings.Contains(line, "BUG: ") || strings.Contains(line, "general protection fault") || strings.HasPrefix(line, "panic: ") || strings.Contains(line, "index out of range") {
			story = append(story, "    | "+line)
		}
		if i := strings.Index(line, "rfvm-result "); i >= 0 {
			var r guestResult
			require.NoError(t, json.Unmarshal([]byte(line[i+len("rfvm-result "):]), &r), line)
			res.result = &r
			res.results = append(res.results, &r)
		}
	}
	t.Logf("boot %s: qemu exit %d after %.1fs\n%s", strings.Join(extra, " "), res.exit, took.Seconds(), strings.Join(story, "\n"))
	return res
}

// disk is the Ringfence root read back from the image with debugfs.
type disk struct {
	record []byte // the boot record file, both copies
	root   string // a copy of the root dir on the host
}

func readDisk(t *testing.T, img string) disk {
	t.Helper()
	dst := t.TempDir()
	out, err := exec.Command("debugfs", "-R", "rdump /ringfence "+dst, img).CombinedOutput()
	require.NoError(t, err, "debugfs: %s", out)
	root := filepath.Join(dst, "ringfence")
	rec, err := os.ReadFile(installer.RecordPathOf(root, 291))
	require.NoError(t, err, "debugfs: %s", out)
	return disk{record: rec, root: root}
}

// pick is the record as any reader would take it.
func (d disk) pick(t *testing.T) bootguard.Record {
	t.Helper()
	r, _, ok := bootguard.Pick(d.record)
	require.True(t, ok, "no valid copy of the boot record on the disk")
	return r
}

// copies reports which of the two copies are valid.
func (d disk) copies(t *testing.T) [2]bool {
	t.Helper()
	require.Len(t, d.record, 2*bootguard.CopySize)
	var v [2]bool
	for i := range v {
		_, v[i] = bootguard.DecodeCopy(d.record[i*bootguard.CopySize : (i+1)*bootguard.CopySize])
	}
	return v
}

func (d disk) installer(t *testing.T) *installer.Installer {
	t.Helper()
	in, err := installer.Open(d.root, installer.Options{Capabilities: testfiles.Capabilities(t, "7.11"), ReadOnly: true})
	require.NoError(t, err)
	t.Cleanup(func() { in.Close() })
	return in
}

func requireExit(t *testing.T, b bootResult, want int) {
	t.Helper()
	if b.exit != want {
		t.Fatalf("qemu exited %d, want %d (0 clean poweroff, 1 kernel panic); console:\n%s", b.exit, want, b.console)
	}
}

// TestVM boots the guest through the three scenarios of the crash loop.
func TestVM(t *testing.T) {
	tools(t)
	g := buildGuest(t)

	// (1) Good trial content: the guest loads it, survives its first
	// events, records the load as finished and powers off cleanly.
	t.Run("good", func(t *testing.T) {
		t.Parallel()
		img := stateDisk(t, "7.11", "good-ipc-1001", "good-ipc-1002")
		b := boot(t, g, img)
		requireExit(t, b, 0)
		require.NotNil(t, b.result, b.console)
		require.Equal(t, uint32(1002), b.result.Version)
		require.Equal(t, string(bootguard.WhyTrial), b.result.Why)
		require.True(t, b.result.Loaded)

		r := readDisk(t, img).pick(t)
		e := r.Entry(r.Active)
		require.Equal(t, uint32(1002), e.Version)
		require.Equal(t, bootguard.StateTrial, e.State)
		require.Equal(t, bootguard.CrumbLoaded, e.Crumb)
	})

	// (2) The 2024 case: content installed by an installer that believed
	// the sensor was 7.12 (21 fields) crashes the 7.11 interpreter on its
	// first events. Boot 1 panics the kernel; boot 2 falls back to
	// last-known-good by itself and powers off cleanly.
	t.Run("crash-loop", func(t *testing.T) {
		t.Parallel()
		img := stateDisk(t, "7.12", "good-ipc-1001", "cf291-shape")
		trial := readDisk(t, img).pick(t)
		bad := trial.Entry(trial.Active).Version

		b1 := boot(t, g, img)
		requireExit(t, b1, 1)
		require.Nil(t, b1.result)
		require.Contains(t, b1.console, "index out of range", "the interpreter should have read past its input array")
		r := readDisk(t, img).pick(t)
		require.Equal(t, bootguard.CrumbLoading, r.Entry(r.Active).Crumb, "the panic left the load unfinished on disk")

		b2 := boot(t, g, img)
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
		q, err := d.installer(t).Quarantined()
		require.NoError(t, err)
		require.Len(t, q, 1)
		require.Equal(t, bad, q[0].Version, "state.db must quarantine the version that crashed")
	})

	// (4) A root of the single-channel layout (before channels): the
	// guest's loader converts it at its first open and boots the trial.
	t.Run("legacy-root", func(t *testing.T) {
		t.Parallel()
		img := stateDisk(t, "7.11", "good-ipc-1001", "good-ipc-1002", func(root string) {
			ch := installer.ChannelDir(root, 291)
			require.NoError(t, os.Rename(filepath.Join(ch, installer.SlotsDir), filepath.Join(root, installer.SlotsDir)))
			require.NoError(t, os.Rename(filepath.Join(ch, installer.RecordName), filepath.Join(root, installer.RecordName)))
			require.NoError(t, os.RemoveAll(filepath.Join(root, installer.ChannelsDir)))
		})
		b := boot(t, g, img)
		requireExit(t, b, 0)
		require.NotNil(t, b.result, b.console)
		require.Equal(t, uint32(1002), b.result.Version)
		require.Equal(t, string(bootguard.WhyTrial), b.result.Why)
		require.True(t, b.result.Loaded)
		d := readDisk(t, img)
		_, err := os.Stat(filepath.Join(d.root, installer.RecordName))
		require.True(t, os.IsNotExist(err), "the record moved into channels/291")
		r := d.pick(t)
		require.Equal(t, bootguard.CrumbLoaded, r.Entry(r.Active).Crumb)
	})

	// (3) A panic in the middle of a boot record write: the loader dies
	// right after writing and syncing half of the copy it overwrites, and
	// the kernel panics. The disk holds one torn copy and the previous
	// record intact; the next boot reads the intact one and goes on.
	t.Run("torn-record", func(t *testing.T) {
		t.Parallel()
		img := stateDisk(t, "7.11", "good-ipc-1001", "good-ipc-1002")
		before := readDisk(t, img).pick(t)

		b1 := boot(t, g, img, "rfvm.failpoint="+bootguard.FailpointTornWrite)
		requireExit(t, b1, 1)
		d := readDisk(t, img)
		valid := d.copies(t)
		require.NotEqual(t, valid[0], valid[1], "exactly one copy is torn: %v", valid)
		require.Equal(t, before.Seq, d.pick(t).Seq, "the intact copy is the record from before the write")

		b2 := boot(t, g, img)
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

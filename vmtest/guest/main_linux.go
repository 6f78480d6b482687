package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/failpoint"
	"github.com/ringfence/ringfence/internal/lazyfs"
	"github.com/ringfence/ringfence/loader"
	"github.com/ringfence/ringfence/sensor"
)

// Paths inside the guest. The host test builds the initramfs and the state
// disk to match.
const (
	modulesDir = "/modules"    // the .ko files and "order", one file name per line
	moduleKo   = "/rfguard.ko" // the reference kernel agent, when the test packs one
	lazyMount  = "/lazy"       // the recording file system over the root (rfvm.lazyfs=1)
	// recordingName is the recording of the module's load, at the top of
	// the state disk.
	recordingName = "rfvm-recording.gob"
	stateDev      = "/dev/vda"  // the state disk (virtio-blk)
	stateMount    = "/state"    // where it is mounted
	stateRoot     = "ringfence" // the Ringfence root dir on it
	devWait       = 20 * time.Second
	resultLabel   = "rfvm-result "
)

// Result is what the loader reports on a clean boot, one JSON line.
type Result struct {
	Action  string   `json:"action"`
	Slot    string   `json:"slot,omitempty"`
	Channel uint32   `json:"channel,omitempty"`
	Version uint32   `json:"version,omitempty"`
	Why     string   `json:"why"`
	Loaded  bool     `json:"loaded"`
	Events  int      `json:"events"`
	Notes   []string `json:"notes,omitempty"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "loader" {
		os.Exit(loaderMain(os.Args[2:]))
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "guest: run as PID 1 of the VM test's guest, or as 'guest loader --root DIR'")
		os.Exit(2)
	}
	if err := initMain(); err != nil {
		say("init failed: %v", err)
	}
	// Returning from PID 1 panics the kernel too; say why first.
	panicKernel()
}

func say(format string, args ...any) {
	fmt.Printf("rfvm: "+format+"\n", args...)
}

func initMain() error {
	for _, m := range []struct{ src, dir, fs string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dir, m.fs, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
	}
	args, err := cmdline()
	if err != nil {
		return err
	}
	if err := loadModules(); err != nil {
		return err
	}
	if err := waitFor(stateDev, devWait); err != nil {
		return err
	}
	if err := os.MkdirAll(stateMount, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(stateDev, stateMount, "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount %s on %s: %w", stateDev, stateMount, err)
	}
	say("state disk mounted")

	if args["rfvm.loader"] == "module" {
		return moduleMain(args)
	}
	cmd := exec.Command("/init", "loader", "--root", filepath.Join(stateMount, stateRoot), "--seed", args["rfvm.seed"])
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = []string{"PATH=/"}
	if fp := args["rfvm.failpoint"]; fp != "" {
		cmd.Env = append(cmd.Env, failpoint.EnvKill+"="+fp)
		say("loader will die at failpoint %s", fp)
	}
	if err := cmd.Run(); err != nil {
		// The agent crashed on content: so does the host, at once, with no
		// sync and no unmount, as a kernel agent's crash would.
		say("loader died (%v): kernel panic", err)
		panicKernel()
	}
	unix.Sync()
	if err := unix.Unmount(stateMount, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", stateMount, err)
	}
	say("clean shutdown")
	return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

// moduleMain makes the reference kernel agent (kmod/, at moduleKo) the only
// loader: it loads the module, whose init runs the loader contract, the
// content and its first events in kernel space, with the rfguard.* words
// of the kernel command line as its parameters. Nothing here touches the
// record or the content. A fault in the module's interpreter is an oops and,
// with panic_on_oops, a panic: this never returns then. A load the module
// refused (it returns an error from its init) is an agent that failed to
// start, and the host goes down as with the user-space loader.
func moduleMain(args map[string]string) error {
	var params []string
	for k, v := range args {
		if name, ok := strings.CutPrefix(k, "rfguard."); ok {
			params = append(params, name+"="+v)
		}
	}
	var rec *lazyfs.FS
	if args["rfvm.lazyfs"] == "1" {
		var err error
		if rec, err = recordModule(); err != nil {
			return err
		}
		params = append(params, "root="+lazyMount, "marks=1")
	}
	slices.Sort(params)
	say("loading the kernel agent %s %s", moduleKo, strings.Join(params, " "))
	fd, err := unix.Open(moduleKo, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", moduleKo, err)
	}
	err = unix.FinitModule(fd, strings.Join(params, " "), 0)
	unix.Close(fd)
	kmsg("rfguard")
	if err != nil {
		say("the kernel agent refused to load (%v): kernel panic", err)
		panicKernel()
	}
	if rec != nil {
		if err := saveRecording(rec); err != nil {
			return err
		}
	}
	res, err := os.ReadFile("/sys/module/rfguard/parameters/result")
	if err != nil {
		return fmt.Errorf("the kernel agent's result: %w", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(res)), "\n") {
		fmt.Printf("%s%s\n", resultLabel, line)
	}
	if args["rfvm.unload"] == "1" {
		// The agent stops cleanly: its exit records the clean stop.
		if err := unix.DeleteModule("rfguard", 0); err != nil {
			return fmt.Errorf("unload the kernel agent: %w", err)
		}
		kmsg("clean stop")
		say("the kernel agent stopped cleanly")
	}
	unix.Sync()
	if err := unix.Unmount(stateMount, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", stateMount, err)
	}
	say("clean shutdown")
	return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

// recordModule mounts a recording file system (internal/lazyfs) at
// lazyMount over the state disk's root, for the module to load through: the
// host then checks every state a power cut during the module's load can
// leave (vmtest's power-cut scenario). Serving it from this process is safe:
// the module reads and writes with kernel_read and kernel_write from inside
// finit_module, a system call, never through a mapping of the mount.
func recordModule() (*lazyfs.FS, error) {
	if err := os.MkdirAll(lazyMount, 0o700); err != nil {
		return nil, err
	}
	fs, err := lazyfs.Mount(lazyMount, filepath.Join(stateMount, stateRoot))
	if err != nil {
		return nil, err
	}
	if err := fs.Start(); err != nil {
		return nil, err
	}
	say("recording the module's changes on %s", lazyMount)
	return fs, nil
}

// saveRecording marks the module's load as returned, stops recording and
// writes the recording to the state disk, synced, for the host.
func saveRecording(fs *lazyfs.FS) error {
	_, _ = os.Stat(filepath.Join(lazyMount, lazyfs.MarkPrefix+"done")) // powercut.MarkDone: the lookup is the mark
	rec := fs.Stop()
	if err := fs.Unmount(); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(stateMount, recordingName))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := rec.Encode(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	say("recorded %d changes of the module's load", len(rec.Ops))
	return f.Close()
}

// kmsg prints the kernel log's lines that contain word (the console shows
// only warnings and worse at the test's loglevel).
func kmsg(word string) {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		say("/dev/kmsg: %v", err)
		return
	}
	defer unix.Close(fd)
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			return // EAGAIN: the end of the log
		}
		// "prio,seq,time,flags;message"
		if _, msg, ok := strings.Cut(string(buf[:n]), ";"); ok && strings.Contains(msg, word) {
			say("kernel: %s", strings.TrimRight(msg, "\n"))
		}
	}
}

// panicKernel panics the kernel the way the host would: sysrq c.
func panicKernel() {
	if err := os.WriteFile("/proc/sysrq-trigger", []byte("c"), 0); err != nil {
		say("sysrq-trigger: %v", err)
	}
	os.Exit(1) // PID 1 exiting panics the kernel as well
}

// cmdline returns the key=value words of the kernel command line.
func cmdline() (map[string]string, error) {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, w := range strings.Fields(string(b)) {
		if k, v, ok := strings.Cut(w, "="); ok {
			out[k] = v
		}
	}
	return out, nil
}

// loadModules loads the modules named in modulesDir/order, in that order (the
// host sorted them so that every module comes after its dependencies).
func loadModules() error {
	f, err := os.Open(filepath.Join(modulesDir, "order"))
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" {
			continue
		}
		if err := loadModule(filepath.Join(modulesDir, name)); err != nil {
			return err
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return err
	}
	say("%d modules loaded", n)
	return nil
}

func loadModule(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open module %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.FinitModule(fd, "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", filepath.Base(path), err)
	}
	return nil
}

// waitFor polls for a device node: devtmpfs creates it when the driver has
// probed the disk, shortly after the module loaded.
func waitFor(path string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v", path, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// loaderMain is the loader: the loader contract against the state disk's
// root, the chosen content loaded into the reference sensor, its first
// events. An interpreter crash kills this process; init sees that.
func loaderMain(args []string) int {
	fs := flag.NewFlagSet("guest loader", flag.ContinueOnError)
	root := fs.String("root", "", "Ringfence root directory")
	seed := fs.String("seed", "", "seed of the first events")
	if err := fs.Parse(args); err != nil || *root == "" {
		fmt.Fprintln(os.Stderr, "usage: guest loader --root DIR [--seed N]")
		return 2
	}
	var s uint64 = 1
	if *seed != "" {
		v, err := strconv.ParseUint(*seed, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "guest loader: bad --seed %q\n", *seed)
			return 2
		}
		s = v
	}
	in, err := installer.Open(*root, installer.Options{Capabilities: sensor.DefaultCapabilities()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "guest loader:", err)
		return 1
	}
	defer in.Close()
	for _, w := range in.Warnings() {
		say("warning: %s", w)
	}
	// Every channel of the root, in order; one result line each.
	loaded, err := loader.LoadAll(in, loader.Options{Capabilities: sensor.DefaultCapabilities(), Seed: s})
	if err != nil {
		fmt.Fprintln(os.Stderr, "guest loader:", err)
		return 1
	}
	for _, l := range loaded {
		d := l.Boot.Decision
		res := Result{Action: d.Action.String(), Why: string(d.Why), Loaded: l.Boot.Loaded, Events: l.Events, Notes: l.Boot.Notes}
		if l.Program != nil {
			res.Slot, res.Channel, res.Version = d.Slot.String(), d.Entry.Channel, d.Entry.Version
		}
		b, _ := json.Marshal(res)
		fmt.Printf("%s%s\n", resultLabel, b)
	}
	return 0
}

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
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/failpoint"
	"github.com/ringfence/ringfence/loader"
	"github.com/ringfence/ringfence/sensor"
)

// Paths inside the guest. The host test builds the initramfs and the state
// disk to match.
const (
	modulesDir  = "/modules"  // the .ko files and "order", one file name per line
	stateDev    = "/dev/vda"  // the state disk (virtio-blk)
	stateMount  = "/state"    // where it is mounted
	stateRoot   = "ringfence" // the Ringfence root dir on it
	devWait     = 20 * time.Second
	resultLabel = "rfvm-result "
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

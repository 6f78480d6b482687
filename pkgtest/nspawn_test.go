package pkgtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// container is a Debian root booted with systemd-nspawn, systemd as its
// PID 1, and the host's network (the rollout server on the host's loopback
// is the container's too).
type container struct {
	t    *testing.T
	cmd  *exec.Cmd
	init int // the container's PID 1, as the host sees it
	log  *bytes.Buffer
	dir  string
}

// boot copies base into a fresh directory and boots it. It returns once
// systemd says the boot finished (systemctl is-system-running --wait).
func boot(t *testing.T, base string) *container {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "root")
	if out, err := exec.Command("cp", "-a", "--reflink=auto", base, dir).CombinedOutput(); err != nil {
		t.Fatalf("copy the root: %v\n%s", err, out)
	}
	c := &container{t: t, log: &bytes.Buffer{}, dir: dir}
	// --register=no --keep-unit: no systemd on the host to register with.
	// A machine name of its own: nspawn keeps per-name state under
	// /run/systemd/nspawn, and two containers of one name (two test runs at
	// once) collide there.
	name := fmt.Sprintf("rf-pkgtest-%d", os.Getpid())
	c.cmd = exec.Command("systemd-nspawn", "-q", "-D", dir, "--machine", name, "-b", "--register=no", "--keep-unit", "--console=pipe")
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	t.Cleanup(c.stop)
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for c.init == 0 {
		c.init = initOf(c.cmd.Process.Pid)
		if c.init != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd-nspawn started no init in 60 s; its output:\n%s", c.log)
		}
		<-tick.C
	}
	// is-system-running --wait blocks until the boot is over, once
	// systemd's bus is up ("offline" before that); "degraded" is a
	// finished boot with a failed unit, which the checks below would name.
	c.until("the container's boot", 90*time.Second, func() (bool, string) {
		out, _ := c.exec("systemctl", "is-system-running", "--wait")
		s := strings.TrimSpace(out)
		return s == "running" || s == "degraded", s + "; systemd-nspawn said:\n" + c.log.String()
	})
	return c
}

// initOf returns the container's init among pid's descendants: the
// process that is PID 1 in its own PID namespace (its NSpid ends in 1), or
// 0 while there is none yet. nspawn's first child is not it: that one sets
// up the namespaces, forks init and exits, so taking the first child races
// with its exit.
func initOf(pid int) int {
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p != pid {
			if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p)); err == nil {
				for _, line := range strings.Split(string(st), "\n") {
					if f := strings.Fields(strings.TrimPrefix(line, "NSpid:")); strings.HasPrefix(line, "NSpid:") && len(f) > 1 && f[len(f)-1] == "1" {
						return p
					}
				}
			}
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p, p))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				queue = append(queue, n)
			}
		}
	}
	return 0
}

// exec runs a command inside the container (all of its namespaces) and
// returns its combined output.
func (c *container) exec(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(c.init), "-a", "--"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// must is exec that fails the test on error.
func (c *container) must(args ...string) string {
	c.t.Helper()
	out, err := c.exec(args...)
	if err != nil {
		c.t.Fatalf("in the container: %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// show returns a unit's properties (systemctl show -p ...).
func (c *container) show(unit string, props ...string) map[string]string {
	c.t.Helper()
	args := []string{"systemctl", "show", unit}
	for _, p := range props {
		args = append(args, "-p", p)
	}
	out := c.must(args...)
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			m[k] = v
		}
	}
	return m
}

// until polls cond (a state outside this process: systemd's, the daemon's
// files) every 100 ms until it holds, or fails after limit.
func (c *container) until(what string, limit time.Duration, cond func() (bool, string)) {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: not within %v; last: %s", what, limit, last)
		}
		<-tick.C
	}
}

// stop powers the container off (and kills nspawn if it does not stop).
func (c *container) stop() {
	if c.cmd == nil || c.cmd.ProcessState != nil {
		return
	}
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	if c.init != 0 {
		_, _ = c.exec("systemctl", "poweroff")
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// file reads a file of the container's root from the host side.
func (c *container) file(path string) ([]byte, error) {
	return os.ReadFile(filepath.Join(c.dir, path))
}

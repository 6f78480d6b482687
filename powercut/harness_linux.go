package powercut

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ringfence/ringfence/internal/lazyfs"
)

// Scenario is one durable operation and what must hold after a power cut at
// any point of it.
type Scenario struct {
	Name string
	// Setup prepares root (the mounted file system) before recording: all
	// it wrote is taken as durable.
	Setup func(root string) error
	// Run is the operation, on root. mark records that a point of the
	// operation was passed (the loader started loading, a revert was
	// reported, ...): a Cut says which marks came before it.
	Run func(root string, mark func(name string)) error
	// Check opens what a cut left and returns what does not hold.
	Check func(c Cut) error
}

// Cut is one state a power cut can leave.
type Cut struct {
	// Root is the state, materialized in a directory of its own that the
	// check may change.
	Root string
	// After is the number of recorded changes before the cut; Kept says
	// which of the changes not yet durable the disk kept: "none", "all" or
	// "some".
	After int
	Kept  string
	// Last is the change just before the cut (zero for the cut before the
	// first).
	Last  lazyfs.Op
	marks map[string]int
}

// Passed reports whether the operation had passed mark name before the cut.
func (c Cut) Passed(name string) bool {
	i, ok := c.marks[name]
	return ok && i <= c.After
}

func (c Cut) String() string {
	last := "start"
	if c.After > 0 {
		last = c.Last.String()
	}
	return fmt.Sprintf("cut after change %d (%s), unsynced changes kept: %s", c.After, last, c.Kept)
}

// Options tune Run.
type Options struct {
	// Samples is the number of random subsets of the unsynced changes tried
	// at each cut point (default 3).
	Samples int
	// Seed seeds them.
	Seed uint64
	// MaxFailures stops checking after that many failures (default 5).
	MaxFailures int
	// Env is added to the child processes' environment (a failpoint that
	// skips a sync, say).
	Env []string
}

func (o Options) withDefaults() Options {
	if o.Samples == 0 {
		o.Samples = 3
	}
	if o.MaxFailures == 0 {
		o.MaxFailures = 5
	}
	return o
}

// Result is what Run tried.
type Result struct {
	// Changes and Syncs are the recorded operation's size.
	Changes, Syncs int
	// CutPoints is the number of points cut at (Changes+1); States the
	// distinct states checked.
	CutPoints, States int
	// Failures are the cuts whose check failed, with why.
	Failures []string
}

func (r Result) String() string {
	return fmt.Sprintf("%d changes (%d syncs), %d cut points, %d distinct states", r.Changes, r.Syncs, r.CutPoints, r.States)
}

// Run runs sc on a recording file system mounted in a new directory under
// tmp and checks every state a power cut can leave. It returns
// lazyfs.ErrNoFUSE where FUSE cannot be mounted.
//
// The setup and the operation run in a child process (the test binary, which
// must call Main from TestMain): code that maps a file of the mount (bbolt
// does) must not run in the process that serves it, or a page fault that
// waits for the server and a garbage collection that waits for the faulting
// thread wait for each other.
func Run(tmp string, sc Scenario, opts Options) (Result, error) {
	opts = opts.withDefaults()
	work, err := os.MkdirTemp(tmp, "powercut-"+sc.Name+"-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(work)
	mnt, backing := filepath.Join(work, "mnt"), filepath.Join(work, "backing")
	for _, d := range []string{mnt, backing} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return Result{}, err
		}
	}
	fs, err := lazyfs.Mount(mnt, backing)
	if err != nil {
		return Result{}, err
	}
	rec, runErr := record(fs, sc, opts.Env)
	if err := fs.Unmount(); err != nil {
		return Result{}, err
	}
	if runErr != nil {
		return Result{}, runErr
	}
	return check(work, sc, rec, opts)
}

// CheckRecording checks every state a power cut can leave in a recording
// made elsewhere (vmtest's guest records the kernel module's writes inside
// a VM and brings the recording back on its disk), exactly as Run checks its
// own: sc.Check is called per distinct state; sc.Setup and sc.Run are not
// used. The states are materialized in a new directory under tmp.
func CheckRecording(tmp string, sc Scenario, rec lazyfs.Recording, opts Options) (Result, error) {
	opts = opts.withDefaults()
	work, err := os.MkdirTemp(tmp, "powercut-"+sc.Name+"-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(work)
	return check(work, sc, rec, opts)
}

// MarkDone is the mark Run sets when the operation returned: from there on
// what it did must survive every cut.
const MarkDone = "done"

// Environment of a child process: the scenario and phase to run, and where.
const (
	envChild = "RINGFENCE_POWERCUT_CHILD"
	envRoot  = "RINGFENCE_POWERCUT_ROOT"
)

// Main runs the phase of a scenario that the environment names, in a child
// process Run started, and exits; otherwise it returns. Call it first in
// TestMain with every scenario the tests run.
func Main(scenarios ...[]Scenario) {
	v := os.Getenv(envChild)
	if v == "" {
		return
	}
	name, phase, _ := strings.Cut(v, "/")
	root := os.Getenv(envRoot)
	for _, list := range scenarios {
		for _, sc := range list {
			if sc.Name != name {
				continue
			}
			var err error
			switch phase {
			case "setup":
				err = sc.Setup(root)
			case "run":
				mark := func(m string) { _, _ = os.Stat(filepath.Join(root, lazyfs.MarkPrefix+m)) }
				if err = sc.Run(root, mark); err == nil {
					mark(MarkDone)
				}
			default:
				err = fmt.Errorf("unknown phase %q", phase)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "powercut child %s: %v\n", v, err)
				os.Exit(3)
			}
			os.Exit(0)
		}
	}
	fmt.Fprintf(os.Stderr, "powercut child: no scenario %q\n", name)
	os.Exit(3)
}

// child runs one phase of sc in a child process on root.
func child(sc Scenario, phase, root string, env []string) error {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+sc.Name+"/"+phase, envRoot+"="+root)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("powercut: %s: %s: %w\n%s", sc.Name, phase, err, out)
	}
	return nil
}

// record runs the scenario's setup and operation on the mount.
func record(fs *lazyfs.FS, sc Scenario, env []string) (lazyfs.Recording, error) {
	if err := child(sc, "setup", fs.Mountpoint, env); err != nil {
		return lazyfs.Recording{}, err
	}
	if err := fs.Start(); err != nil {
		return lazyfs.Recording{}, err
	}
	err := child(sc, "run", fs.Mountpoint, env)
	rec := fs.Stop()
	if err != nil {
		return rec, fmt.Errorf("the operation failed on the recording file system: %w", err)
	}
	return rec, nil
}

// check builds every cut's states and checks each distinct one.
func check(work string, sc Scenario, rec lazyfs.Recording, opts Options) (Result, error) {
	res := Result{Changes: len(rec.Ops), CutPoints: len(rec.Ops) + 1}
	for _, o := range rec.Ops {
		if o.IsSync() {
			res.Syncs++
		}
	}
	rng := rand.New(rand.NewPCG(opts.Seed, uint64(len(sc.Name))))
	// A state is checked once per set of marks passed: the same bytes must
	// satisfy more once the operation passed a mark (the load began, the
	// revert was reported, it returned).
	seen := map[string]bool{}
	n := 0
	for k := 0; k <= len(rec.Ops); k++ {
		volatile := rec.Volatile(k)
		type variant struct {
			kept string
			keep func(int) bool
		}
		variants := []variant{{"none", nil}}
		if len(volatile) > 0 {
			variants = append(variants, variant{"all", func(int) bool { return true }})
			for range opts.Samples {
				pick := map[int]bool{}
				for _, i := range volatile {
					pick[i] = rng.IntN(2) == 0
				}
				variants = append(variants, variant{"some", func(i int) bool { return pick[i] }})
			}
		}
		for _, v := range variants {
			im := rec.State(k, v.keep)
			d := im.Digest()
			key := string(d[:]) + passed(rec.Marks, k)
			if seen[key] {
				continue
			}
			seen[key] = true
			res.States++
			n++
			dir := filepath.Join(work, fmt.Sprintf("state-%d", n))
			if err := im.Materialize(dir); err != nil {
				return res, err
			}
			c := Cut{Root: dir, After: k, Kept: v.kept, marks: rec.Marks}
			if k > 0 {
				c.Last = rec.Ops[k-1]
			}
			if err := sc.Check(c); err != nil {
				res.Failures = append(res.Failures, fmt.Sprintf("%s: %s: %v", sc.Name, c, err))
			}
			if err := os.RemoveAll(dir); err != nil {
				return res, err
			}
			if len(res.Failures) >= opts.MaxFailures {
				return res, nil
			}
		}
	}
	return res, nil
}

// passed lists the marks passed after k changes.
func passed(marks map[string]int, k int) string {
	var names []string
	for m, i := range marks {
		if i <= k {
			names = append(names, m)
		}
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

// Errors collects what a check found.
type Errors []string

// Add records a failed invariant.
func (e *Errors) Add(format string, args ...any) { *e = append(*e, fmt.Sprintf(format, args...)) }

// Err is nil when nothing was added.
func (e Errors) Err() error {
	if len(e) == 0 {
		return nil
	}
	return errors.New(strings.Join(e, "; "))
}

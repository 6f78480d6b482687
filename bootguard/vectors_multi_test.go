package bootguard_test

// Multi-channel vectors (issue 22): a host root follows several channels,
// each with its own boot record at <root>/channels/<N>/bootrecord. At boot
// the loader goes through the channels in ascending numeric order and runs
// the loader contract on each channel's record alone (bootguard.Select,
// rfbr_select): read, decide, write the next copy in place and flush, then
// load. These vectors hold the Go and C loaders to the same answers across
// several records, crashes included.
//
// testdata/bootrecord/multi/<scenario>/ holds:
//
//   - ch<N>.bin: the initial record file of channel N;
//   - boots: the script, one statement a line ('#' starts a comment):
//     boot [crash-loading=N | tear=N@K] [good=N,...] [stop]
//     One boot: the loader pass over every channel in ascending order.
//     Each channel that loads is then marked loaded (MarkLoaded, as the
//     reference loader does after the first events), unless the host goes
//     down first: crash-loading=N, while loading channel N (after its
//     select wrote; the channels after N are never selected); tear=N@K,
//     while writing N's record (only the first K bytes of the copy reach
//     the disk). good=N: after the pass, N's health window passes (MarkGood).
//     stop: then the agent stops cleanly, and records it (MarkStopped) on
//     each channel it loaded, as the reference agent does on SIGTERM.
//     Every boot ends with the host going down; without stop, that is a
//     crash or a reboot the agent did not stop cleanly before, and the
//     loader cannot tell which.
//     check N TOKEN...
//     After the boot above it, channel N's state line (see the .want) has
//     every TOKEN; "as-initial" means the file is byte for byte ch<N>.bin.
//     A failed check fails the test, -update included.
//   - boots.want: the transcript, per boot: each loader line (the decision
//     in the form of the single-record vectors, and where the host went
//     down), the agent's and the daemon's steps, then every channel's state:
//     untouched/written this boot, the decoded record, and the SHA-256 of
//     the whole file, which compares the bytes each implementation wrote.
//
// TestMultiChannelVectors runs the scripts with the Go loader (Select);
// TestMultiChannelVectorsC with bootguard/c/harness_multi.c, which runs one
// boot's loader pass with rfbr_select and file I/O only. MarkLoaded, MarkGood
// and MarkStopped are the user-mode side's (Go in the product), so the test
// applies them for both loaders, after the pass: records are separate files, so
// applying a channel's MarkLoaded after the later channels' selects leaves the
// same bytes as applying it in between. The scenarios are the table in
// multiScenarios; after changing it or the contract, run
// go test ./bootguard -run TestMultiChannelVectors -update and review the diff.

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/internal/testtmp"
)

var multiDir = filepath.Join(vectorDir, "multi")

// multiScenario is one scenario: what it shows, the channels' initial record
// files and the boots script.
type multiScenario struct {
	about    string
	channels map[uint32][]byte
	boots    string
}

// multiScenarios is the table the testdata is generated from. The named
// states are built through the package's API, the way a host gets there.
func multiScenarios(t *testing.T) map[string]multiScenario {
	s := &states{t: t, dir: testtmp.Dir(t)}
	return map[string]multiScenario{
		"load-crash": {
			about: `Channel 292 is on trial (slot b, fallback a); 291 and 293 run last-known-good.
The host crashes while loading 292's trial. At the next boot the loader, which
consults 292's record alone, finds its breadcrumb still LOADING and reverts 292
to its fallback; 291 and 293 are never written, byte for byte. In the crashing
boot 293 is not even selected: the loader goes in ascending order and the host
died at 292. The third boot loads 292's last-known-good without a write.`,
			channels: map[uint32][]byte{291: s.good(291), 292: s.trial(292), 293: s.good(293)},
			boots: `boot crash-loading=292
check 291 untouched as-initial
check 292 written active=b fallback=a b=TRIAL(292,v1002,tries=1,load-tries=1,LOADING)
check 293 untouched as-initial
boot
check 291 untouched as-initial
check 292 written active=a fallback=- a=GOOD(292,v1001) b=BAD(292,v1002,tries=1,load-tries=0,NONE,load-crash)
check 293 untouched as-initial
boot
check 291 as-initial
check 292 untouched active=a
check 293 as-initial
`,
		},
		"two-trials": {
			about: `Channels 292 and 293 are on trial at once (set up by hand: the daemon runs one
trial at a time per host); 291 runs last-known-good. Each boot both trials load
and are marked LOADED, then the host crashes in the health window, before
either is marked good. The loader decides each record on its own and cannot
tell which content crashed the host, so every crash costs BOTH trials a try;
after the default two tries both revert (tries-exhausted), though one of them
may well have been innocent. This is why the daemon runs one trial at a time:
a crash then counts against exactly the content that is new.`,
			channels: map[uint32][]byte{291: s.good(291), 292: s.trial(292), 293: s.trial(293)},
			boots: `boot
check 291 untouched as-initial
check 292 written b=TRIAL(292,v1002,tries=1,load-tries=1,LOADED)
check 293 written b=TRIAL(293,v1002,tries=1,load-tries=1,LOADED)
boot
check 292 written b=TRIAL(292,v1002,tries=0,load-tries=1,LOADED)
check 293 written b=TRIAL(293,v1002,tries=0,load-tries=1,LOADED)
boot
check 291 as-initial
check 292 written active=a fallback=- b=BAD(292,v1002,tries=0,load-tries=1,NONE,tries-exhausted)
check 293 written active=a fallback=- b=BAD(293,v1002,tries=0,load-tries=1,NONE,tries-exhausted)
boot
check 291 as-initial
check 292 untouched active=a
check 293 untouched active=a
`,
		},
		"trial-pays-for-load-crash": {
			about: `Channels 292 and 293 are on trial at once (set up by hand). 292 loads and is
marked LOADED; then the host crashes while loading 293. The next boot reverts
293 (load-crash) and runs 292's trial again: the loader cannot tell that 292
survived the crash, so 292 paid a try for 293's fault. When the host then
crashes once in 292's health window, 292 has no try left and reverts
(tries-exhausted), where on its own it would have had a second boot. Another
reason the daemon runs one trial at a time.`,
			channels: map[uint32][]byte{291: s.good(291), 292: s.trial(292), 293: s.trial(293)},
			boots: `boot crash-loading=293
check 291 untouched as-initial
check 292 written b=TRIAL(292,v1002,tries=1,load-tries=1,LOADED)
check 293 written b=TRIAL(293,v1002,tries=1,load-tries=1,LOADING)
boot
check 291 as-initial
check 292 written active=b fallback=a b=TRIAL(292,v1002,tries=0,load-tries=1,LOADED)
check 293 written active=a fallback=- b=BAD(293,v1002,tries=1,load-tries=0,NONE,load-crash)
boot
check 291 as-initial
check 292 written active=a fallback=- b=BAD(292,v1002,tries=0,load-tries=1,NONE,tries-exhausted)
check 293 untouched active=a
`,
		},
		"no-valid-copy": {
			about: `Channel 292's record has no valid copy (both sectors damaged). The loader loads
nothing for 292 (safe mode) and writes nothing to it, leaving the bytes for
'ringfence recover'; 291 (last-known-good) and 293 (a trial that is marked
good) load as usual, before and after 292 in the order.`,
			channels: map[uint32][]byte{291: s.good(291), 292: s.noValidCopy(s.trial(292)), 293: s.trial(293)},
			boots: `boot good=293
check 291 untouched as-initial
check 292 untouched as-initial no-valid-copy
check 293 written active=b fallback=- b=GOOD(293,v1002)
boot
check 291 as-initial
check 292 untouched as-initial no-valid-copy
check 293 untouched active=b
`,
		},
		"torn-write": {
			about: `Power is cut while the loader writes channel 292's breadcrumb: only the first
256 bytes of the copy reach the disk. That copy is the one the current record
was not read from, so the next boot reads 292's old record (the trial, no try
spent) and runs it again: the torn write lost only itself. 293's record has a
torn copy from the start (an update of its slot b cut short the same way) and
loads its current copy throughout. 291 and 293 are never written.`,
			channels: map[uint32][]byte{291: s.good(291), 292: s.trial(292), 293: s.tornOlderCopy(s.good(293))},
			boots: `boot tear=292@256
check 291 untouched as-initial
check 292 written seq=8 copy=1 other=invalid active=b fallback=a b=TRIAL(292,v1002,tries=2,load-tries=1,NONE)
check 293 untouched as-initial other=invalid
boot good=292
check 291 untouched as-initial
check 292 written seq=11 copy=0 other=valid active=b fallback=- b=GOOD(292,v1002)
check 293 untouched as-initial other=invalid
`,
		},
		"clean-reboots": {
			about: `Channel 292 is on trial (default policy: two tries); 291 runs last-known-good.
The host reboots cleanly three times during 292's health window: each time the
agent stops cleanly first and records it (breadcrumb STOPPED), so the next boot
loads the trial again without spending a try (before STOPPED, the second clean
reboot reverted good content as tries-exhausted). Then the host crashes in the
window, after the load: the boot after it spends the trial's last try, and the
trial loads once more and is marked good. 291 is never written: a clean stop of
last-known-good records nothing.`,
			channels: map[uint32][]byte{291: s.good(291), 292: s.trial(292)},
			boots: `boot stop
check 291 untouched as-initial
check 292 written b=TRIAL(292,v1002,tries=1,load-tries=1,STOPPED)
boot stop
check 291 untouched as-initial
check 292 written b=TRIAL(292,v1002,tries=1,load-tries=1,STOPPED)
boot stop
check 292 written b=TRIAL(292,v1002,tries=1,load-tries=1,STOPPED)
boot  # then a crash in the health window: no clean stop
check 292 written b=TRIAL(292,v1002,tries=1,load-tries=1,LOADED)
boot good=292 stop
check 291 untouched as-initial
check 292 written active=b fallback=- b=GOOD(292,v1002)
`,
		},
		"ascending-order": {
			about: `Channels 7, 291 and 1000: the loader goes through them in ascending numeric
order (7, 291, 1000), not in the order a directory lists them ("1000", "291",
"7"; both loaders are given that order). 291 and 1000 are on trial; the host
crashes while loading 291, so 1000 is never selected in that boot and keeps
its tries. The next boot reverts 291 alone and runs 1000's trial, which is
marked good.`,
			channels: map[uint32][]byte{7: s.good(7), 291: s.trial(291), 1000: s.trial(1000)},
			boots: `boot crash-loading=291
check 7 untouched as-initial
check 291 written b=TRIAL(291,v1002,tries=1,load-tries=1,LOADING)
check 1000 untouched as-initial
boot good=1000
check 7 untouched as-initial
check 291 written active=a fallback=- b=BAD(291,v1002,tries=1,load-tries=0,NONE,load-crash)
check 1000 written active=b fallback=- b=GOOD(1000,v1002)
`,
		},
	}
}

// states builds named record states through the package's API.
type states struct {
	t   *testing.T
	dir string
	n   int
}

// good is channel ch with version 1001 in slot a, taken through a healthy
// trial: GOOD, slot b empty.
func (s *states) good(ch uint32) []byte {
	path := s.build(ch, false)
	return s.read(path)
}

// trial is good(ch) with version 1002 staged in slot b and activated with the
// default policy: b on trial, a its fallback.
func (s *states) trial(ch uint32) []byte {
	path := s.build(ch, true)
	return s.read(path)
}

func (s *states) build(ch uint32, trial bool) string {
	t := s.t
	s.n++
	path := filepath.Join(s.dir, fmt.Sprintf("record-%d", s.n))
	_, err := bootguard.Init(path)
	require.NoError(t, err)
	stageAt := func(slot bootguard.Slot, version uint32) {
		_, err := bootguard.BeginStage(path, slot)
		require.NoError(t, err)
		_, err = bootguard.FinishStage(path, slot, ch, version, digest(byte(ch)+byte(version)))
		require.NoError(t, err)
		_, err = bootguard.Activate(path, slot, bootguard.DefaultPolicy())
		require.NoError(t, err)
	}
	stageAt(bootguard.SlotA, 1001)
	d, err := bootguard.Select(path)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyTrial, d.Why)
	require.NoError(t, bootguard.MarkLoaded(path))
	_, err = bootguard.MarkGood(path)
	require.NoError(t, err)
	if trial {
		stageAt(bootguard.SlotB, 1002)
	}
	return path
}

func (s *states) read(path string) []byte {
	b, err := os.ReadFile(path)
	require.NoError(s.t, err)
	require.Len(s.t, b, bootguard.FileSize)
	return b
}

// noValidCopy damages both copies of a record file (a byte of each, CRC
// not fixed).
func (s *states) noValidCopy(b []byte) []byte {
	b = slices.Clone(b)
	b[100] ^= 0xff
	b[bootguard.CopySize+200] ^= 0xff
	_, _, ok := bootguard.Pick(b)
	require.False(s.t, ok)
	return b
}

// tornOlderCopy tears an update over the copy that does not hold the current
// record, as a power cut during a write does: slot b claimed and staged with
// version 1002, of which only the first half sector reached the disk.
func (s *states) tornOlderCopy(b []byte) []byte {
	cur, from, ok := bootguard.Pick(b)
	require.True(s.t, ok)
	next := cur
	next.Seq++
	e := next.Entry(bootguard.SlotB)
	*e = bootguard.Entry{Channel: cur.Entry(bootguard.SlotA).Channel, Version: 1002, Digest: digest(9), State: bootguard.StateStaged}
	c := next.Encode()
	b = slices.Clone(b)
	copy(b[(1-from)*bootguard.CopySize:], c[:bootguard.CopySize/2])
	got, gotFrom, ok := bootguard.Pick(b)
	require.True(s.t, ok)
	require.Equal(s.t, cur, got)
	require.Equal(s.t, from, gotFrom)
	return b
}

// boot is one boot statement of a script, with the checks after it.
type boot struct {
	args string // the statement after "boot", for the transcript
	// crashKind says how the host goes down during the loader pass: ""
	// (it does not), "load" (crash-loading=crash) or "tear"
	// (tear=crash@tearBytes).
	crashKind string
	crash     uint32
	tearBytes int
	good      []uint32
	stop      bool // the agent stops cleanly after the pass (and good)
	checks    []check
}

type check struct {
	ch   uint32
	want []string
}

func parseChannel(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || strconv.FormatUint(v, 10) != s {
		return 0, fmt.Errorf("bad channel %q", s)
	}
	return uint32(v), nil
}

func parseBoots(t *testing.T, script string) []boot {
	t.Helper()
	var boots []boot
	sc := bufio.NewScanner(strings.NewReader(script))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		fail := func(format string, a ...any) {
			t.Fatalf("boots line %d %q: %s", n, sc.Text(), fmt.Sprintf(format, a...))
		}
		switch f[0] {
		case "boot":
			b := boot{args: strings.Join(f[1:], " ")}
			for _, opt := range f[1:] {
				k, v, _ := strings.Cut(opt, "=")
				switch k {
				case "crash-loading", "tear":
					if b.crashKind != "" {
						fail("one crash a boot")
					}
					b.crashKind = "load"
					chs, bytes, isTear := strings.Cut(v, "@")
					if k == "tear" {
						var err error
						b.crashKind = "tear"
						if b.tearBytes, err = strconv.Atoi(bytes); !isTear || err != nil || b.tearBytes < 0 || b.tearBytes >= bootguard.CopySize {
							fail("tear=N@K, 0 <= K < %d", bootguard.CopySize)
						}
					} else if isTear {
						fail("crash-loading=N")
					}
					ch, err := parseChannel(chs)
					if err != nil {
						fail("%v", err)
					}
					b.crash = ch
				case "good":
					for _, c := range strings.Split(v, ",") {
						ch, err := parseChannel(c)
						if err != nil {
							fail("%v", err)
						}
						b.good = append(b.good, ch)
					}
				case "stop":
					if strings.Contains(opt, "=") {
						fail("stop takes no value")
					}
					b.stop = true
				default:
					fail("unknown option %q", opt)
				}
			}
			if b.crashKind != "" && len(b.good) > 0 {
				fail("a boot that crashes reaches no health window")
			}
			if b.crashKind != "" && b.stop {
				fail("a boot that crashes does not stop cleanly")
			}
			boots = append(boots, b)
		case "check":
			if len(boots) == 0 || len(f) < 3 {
				fail("check N TOKEN... after a boot")
			}
			ch, err := parseChannel(f[1])
			if err != nil {
				fail("%v", err)
			}
			last := &boots[len(boots)-1]
			last.checks = append(last.checks, check{ch: ch, want: f[2:]})
		default:
			fail("unknown statement %q", f[0])
		}
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, boots, "a script with no boot")
	return boots
}

// multiLoader runs one boot's loader pass over root, given the channel
// directory names in the order the directory lists them, and returns its
// lines.
type multiLoader func(t *testing.T, root string, listed []string, b boot) []string

func recordPath(root string, ch uint32) string {
	return filepath.Join(root, "channels", strconv.FormatUint(uint64(ch), 10), "bootrecord")
}

// goLoader is the multi-channel loader on bootguard.Select.
func goLoader(t *testing.T, root string, listed []string, b boot) []string {
	var chans []uint32
	for _, name := range listed {
		ch, err := parseChannel(name)
		require.NoError(t, err)
		chans = append(chans, ch)
	}
	slices.Sort(chans)
	var out []string
	for _, ch := range chans {
		path := recordPath(root, ch)
		before, err := os.ReadFile(path)
		require.NoError(t, err)
		_, from, _ := bootguard.Pick(before)
		d, err := bootguard.Select(path)
		require.NoError(t, err, "channel %d", ch)
		target := "-"
		if d.Write {
			target = strconv.Itoa(1 - from)
		}
		out = append(out, fmt.Sprintf("ch%d %v target=%s", ch, d, target))
		if b.crashKind == "tear" && b.crash == ch {
			if !d.Write {
				return append(out, fmt.Sprintf("ch%d torn write: nothing was being written", ch))
			}
			// The power cut: of the copy Select wrote, only the first
			// K bytes reached the disk.
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			off := (1 - from) * bootguard.CopySize
			torn := slices.Clone(before)
			if len(torn) < off+b.tearBytes {
				torn = append(torn, make([]byte, off+b.tearBytes-len(torn))...)
			}
			copy(torn[off:off+b.tearBytes], after[off:off+b.tearBytes])
			require.NoError(t, os.WriteFile(path, torn, 0o600))
			return append(out, fmt.Sprintf("ch%d torn write: %d of %d bytes of copy %d", ch, b.tearBytes, bootguard.CopySize, 1-from))
		}
		if b.crashKind == "load" && b.crash == ch {
			return append(out, fmt.Sprintf("ch%d crash while loading", ch))
		}
	}
	return out
}

// cLoader runs bootguard/c/harness_multi.c, compiled at bin.
func cLoader(bin string) multiLoader {
	return func(t *testing.T, root string, listed []string, b boot) []string {
		crash := "-"
		switch b.crashKind {
		case "load":
			crash = fmt.Sprintf("load:%d", b.crash)
		case "tear":
			crash = fmt.Sprintf("tear:%d:%d", b.crash, b.tearBytes)
		}
		cmd := exec.Command(bin, append([]string{root, crash}, listed...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		require.NoError(t, err, "harness_multi %s: %s", crash, stderr.String())
		s := strings.TrimSuffix(strings.ReplaceAll(string(out), "\r\n", "\n"), "\n")
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}
}

// runMultiScenario copies the scenario's records into a new host root, runs
// its script with load and returns the transcript.
func runMultiScenario(t *testing.T, dir string, load multiLoader) string {
	t.Helper()
	script, err := os.ReadFile(filepath.Join(dir, "boots"))
	require.NoError(t, err)
	boots := parseBoots(t, string(script))
	initial := readChannels(t, dir)
	chans := sortedKeys(initial)
	root := testtmp.Dir(t)
	for ch, data := range initial {
		path := recordPath(root, ch)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, data, 0o600))
	}
	ents, err := os.ReadDir(filepath.Join(root, "channels"))
	require.NoError(t, err)
	var listed []string
	for _, e := range ents {
		listed = append(listed, e.Name())
	}

	var w strings.Builder
	fmt.Fprintf(&w, "# %s: the transcript of its boots script (go test ./bootguard -run TestMultiChannelVectors -update)\n", filepath.Base(dir))
	w.WriteString("initial:\n")
	for _, ch := range chans {
		fmt.Fprintf(&w, "  %s\n", stateLine(ch, initial[ch], nil))
	}
	prev := initial
	for i, b := range boots {
		if b.args == "" {
			fmt.Fprintf(&w, "boot %d\n", i+1)
		} else {
			fmt.Fprintf(&w, "boot %d: %s\n", i+1, b.args)
		}
		var loaded []uint32
		for _, line := range load(t, root, listed, b) {
			fmt.Fprintf(&w, "  %s\n", line)
			// The agent: each channel that loaded, and whose load the
			// host survived, is marked loaded.
			name, rest, _ := strings.Cut(line, " ")
			ch, err := parseChannel(strings.TrimPrefix(name, "ch"))
			require.NoError(t, err, "loader line %q", line)
			if strings.HasPrefix(rest, "action=load ") && (b.crashKind == "" || b.crash != ch) {
				fmt.Fprintf(&w, "  ch%d agent mark-loaded: %s\n", ch, outcome(t, bootguard.MarkLoaded(recordPath(root, ch))))
				loaded = append(loaded, ch)
			}
		}
		for _, ch := range b.good {
			_, err := bootguard.MarkGood(recordPath(root, ch))
			fmt.Fprintf(&w, "  ch%d daemon mark-good: %s\n", ch, outcome(t, err))
		}
		if b.stop {
			for _, ch := range loaded {
				fmt.Fprintf(&w, "  ch%d agent mark-stopped: %s\n", ch, outcome(t, bootguard.MarkStopped(recordPath(root, ch))))
			}
		}
		cur := map[uint32][]byte{}
		for _, ch := range chans {
			data, err := os.ReadFile(recordPath(root, ch))
			require.NoError(t, err)
			cur[ch] = data
		}
		fmt.Fprintf(&w, "after boot %d:\n", i+1)
		for _, ch := range chans {
			fmt.Fprintf(&w, "  %s\n", stateLine(ch, cur[ch], prev[ch]))
		}
		for _, c := range b.checks {
			have := strings.Fields(stateLine(c.ch, cur[c.ch], prev[c.ch]))
			if slices.Equal(cur[c.ch], initial[c.ch]) {
				have = append(have, "as-initial")
			}
			var missing []string
			for _, tok := range c.want {
				if !slices.Contains(have, tok) {
					missing = append(missing, tok)
				}
			}
			if len(missing) > 0 {
				t.Errorf("%s, after boot %d: check %d %s: missing %v in %v", filepath.Base(dir), i+1, c.ch, strings.Join(c.want, " "), missing, have)
			}
		}
		prev = cur
	}
	return w.String()
}

// outcome names the result of an agent or daemon step.
func outcome(t *testing.T, err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, bootguard.ErrNoTrial):
		return "refused (no trial)"
	case errors.Is(err, bootguard.ErrNotLoaded):
		return "refused (not loaded)"
	case errors.Is(err, bootguard.ErrNoValidCopy):
		return "refused (no valid copy)"
	}
	t.Fatalf("unexpected error: %v", err)
	return ""
}

// stateLine is a channel's record file as the transcript shows it: written
// or untouched since prev (omitted when prev is nil), the current record
// decoded (copy: the copy it was read from; other: whether the other copy is
// valid), and the SHA-256 of the file.
func stateLine(ch uint32, data, prev []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ch%d", ch)
	if prev != nil {
		if slices.Equal(data, prev) {
			b.WriteString(" untouched")
		} else {
			b.WriteString(" written")
		}
	}
	if r, from, ok := bootguard.Pick(data); ok {
		other := "invalid"
		if len(data) > (1-from)*bootguard.CopySize {
			if _, ok := bootguard.DecodeCopy(data[(1-from)*bootguard.CopySize:]); ok {
				other = "valid"
			}
		}
		fmt.Fprintf(&b, " seq=%d copy=%d other=%s active=%v fallback=%v a=%s b=%s", r.Seq, from, other, r.Active, r.Fallback,
			entryString(r.Slots[0]), entryString(r.Slots[1]))
	} else {
		b.WriteString(" no-valid-copy")
	}
	sum := sha256.Sum256(data)
	fmt.Fprintf(&b, " sha256=%s", hex.EncodeToString(sum[:]))
	return b.String()
}

func entryString(e bootguard.Entry) string {
	if e == (bootguard.Entry{}) {
		return "EMPTY"
	}
	s := fmt.Sprintf("%v(%d,v%d", e.State, e.Channel, e.Version)
	if e.State == bootguard.StateTrial || e.Tries != 0 || e.LoadTries != 0 || e.Crumb != bootguard.CrumbNone {
		s += fmt.Sprintf(",tries=%d,load-tries=%d,%v", e.Tries, e.LoadTries, e.Crumb)
	}
	if e.Reason != bootguard.ReasonNone {
		s += "," + e.Reason.String()
	}
	return s + ")"
}

// readChannels reads a scenario's ch<N>.bin files.
func readChannels(t *testing.T, dir string) map[uint32][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "ch*.bin"))
	require.NoError(t, err)
	out := map[uint32][]byte{}
	for _, p := range paths {
		ch, err := parseChannel(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "ch"), ".bin"))
		require.NoError(t, err, p)
		out[ch], err = os.ReadFile(p)
		require.NoError(t, err)
	}
	require.NotEmpty(t, out, "%s holds no ch<N>.bin", dir)
	return out
}

func sortedKeys(m map[uint32][]byte) []uint32 {
	var ks []uint32
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// bootsFile is the boots file of a scenario: its description as a comment,
// then the script.
func bootsFile(name string, s multiScenario) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n#\n", name)
	for _, line := range strings.Split(s.about, "\n") {
		fmt.Fprintf(&b, "# %s\n", line)
	}
	b.WriteString("#\n# Generated from bootguard/vectors_multi_test.go, which describes the format.\n\n")
	b.WriteString(s.boots)
	return b.String()
}

func multiScenarioNames(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(multiDir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names
}

// TestMultiChannelVectors runs every scenario with the Go loader: the
// testdata must be what the table generates, and the transcript the .want.
func TestMultiChannelVectors(t *testing.T) {
	table := multiScenarios(t)
	if *updateVectors {
		require.NoError(t, os.MkdirAll(multiDir, 0o755))
		for _, name := range multiScenarioNames(t) {
			require.NoError(t, testtmp.RemoveAll(filepath.Join(multiDir, name)))
		}
		for name, s := range table {
			dir := filepath.Join(multiDir, name)
			require.NoError(t, os.MkdirAll(dir, 0o755))
			for ch, data := range s.channels {
				require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("ch%d.bin", ch)), data, 0o644))
			}
			require.NoError(t, os.WriteFile(filepath.Join(dir, "boots"), []byte(bootsFile(name, s)), 0o644))
		}
	}
	names := multiScenarioNames(t)
	var keys []string
	for k := range table {
		keys = append(keys, k)
	}
	require.ElementsMatch(t, keys, names, "testdata/bootrecord/multi and the table disagree; run go test ./bootguard -run TestMultiChannelVectors -update")
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(multiDir, name)
			s := table[name]
			chans := readChannels(t, dir)
			require.Equal(t, sortedKeys(s.channels), sortedKeys(chans), "%s: channels are stale; run with -update", name)
			for ch, data := range s.channels {
				require.Equal(t, data, chans[ch], "%s/ch%d.bin is stale; run with -update", name, ch)
			}
			script, err := os.ReadFile(filepath.Join(dir, "boots"))
			require.NoError(t, err)
			require.Equal(t, bootsFile(name, s), string(script), "%s/boots is stale; run with -update", name)
			got := runMultiScenario(t, dir, goLoader)
			if *updateVectors {
				require.NoError(t, os.WriteFile(filepath.Join(dir, "boots.want"), []byte(got), 0o644))
			}
			w, err := os.ReadFile(filepath.Join(dir, "boots.want"))
			require.NoError(t, err)
			require.Equal(t, string(w), got, "%s: the Go loader disagrees with boots.want", name)
		})
	}
}

// TestMultiChannelVectorsC runs every scenario with the C loader's
// multi-channel harness: its transcript must be byte-identical to the .want.
func TestMultiChannelVectorsC(t *testing.T) {
	bin := buildHarness(t, "harness_multi")
	names := multiScenarioNames(t)
	require.NotEmpty(t, names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(multiDir, name)
			got := runMultiScenario(t, dir, cLoader(bin))
			w, err := os.ReadFile(filepath.Join(dir, "boots.want"))
			require.NoError(t, err)
			require.Equal(t, string(w), got, "%s: the C loader disagrees with boots.want", name)
		})
	}
	t.Logf("C loader agrees with the Go code on %d multi-channel scenarios", len(names))
}

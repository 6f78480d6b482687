package loader_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/bootguard"
	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/loader"
	"github.com/ringfence/ringfence/validator"
)

// host installs the named content in order, each but the last taken through
// a healthy trial, with an installer that validates against capsVersion.
func host(t *testing.T, capsVersion string, names ...string) string {
	t.Helper()
	root := testtmp.Dir(t)
	in, err := installer.Open(root, installer.Options{Capabilities: testfiles.Capabilities(t, capsVersion)})
	require.NoError(t, err)
	defer in.Close()
	for i, n := range names {
		_, _, err := in.Install(testfiles.Channel(t, n), installer.StageOptions{})
		require.NoError(t, err, n)
		if i < len(names)-1 {
			_, err = in.Boot(true)
			require.NoError(t, err)
			_, err = in.MarkGood()
			require.NoError(t, err)
		}
	}
	return root
}

// load opens root and loads it into a 7.11 interpreter, reporting an
// interpreter panic instead of dying of it.
func load(t *testing.T, root string) (l loader.Loaded, crash any, err error) {
	t.Helper()
	in, err := installer.Open(root, installer.Options{Capabilities: testfiles.Capabilities(t, "7.11")})
	require.NoError(t, err)
	defer in.Close()
	defer func() { crash = recover() }()
	l, err = loader.Load(in, loader.Options{Capabilities: testfiles.Capabilities(t, "7.11")})
	return l, nil, err
}

func read(t *testing.T, root string) bootguard.Record {
	t.Helper()
	r, err := bootguard.Read(installer.RecordPathOf(root, 291))
	require.NoError(t, err)
	return r
}

func TestLoadGoodTrial(t *testing.T) {
	root := host(t, "7.11", "good-ipc-1001", "good-ipc-1002")
	l, crash, err := load(t, root)
	require.Nil(t, crash)
	require.NoError(t, err)
	require.NotNil(t, l.Program)
	require.True(t, l.Boot.Loaded)
	require.Greater(t, l.Events, loader.DefaultFirstEvents)
	require.Equal(t, uint32(1002), l.Program.File().ContentVersion)

	r := read(t, root)
	e := r.Entry(r.Active)
	require.Equal(t, uint32(1002), e.Version)
	require.Equal(t, bootguard.StateTrial, e.State)
	require.Equal(t, bootguard.CrumbLoaded, e.Crumb)
}

// TestCrashOnLoadFallsBack is the loader contract end to end in one process:
// content installed by an installer that believed the sensor was 7.12 crashes
// the 7.11 interpreter on its first events; the breadcrumb stays LOADING, and
// the next load falls back to last-known-good and quarantines the version.
func TestCrashOnLoadFallsBack(t *testing.T) {
	root := host(t, "7.12", "good-ipc-1001", "cf291-shape")
	_, crash, _ := load(t, root)
	require.NotNil(t, crash, "the 7.11 interpreter must crash on cf291-shape")
	r := read(t, root)
	trial := r.Entry(r.Active)
	require.Equal(t, bootguard.StateTrial, trial.State)
	require.Equal(t, bootguard.CrumbLoading, trial.Crumb, "the crash left the load unfinished on disk")

	l, crash, err := load(t, root)
	require.Nil(t, crash)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyLoadCrash, l.Boot.Decision.Why)
	require.Equal(t, uint32(1001), l.Program.File().ContentVersion)

	r = read(t, root)
	require.Equal(t, uint32(1001), r.Entry(r.Active).Version)
	bad := r.Entry(l.Boot.Decision.Reverted)
	require.Equal(t, bootguard.StateBad, bad.State)

	in, err := installer.Open(root, installer.Options{Capabilities: testfiles.Capabilities(t, "7.12"), ReadOnly: true})
	require.NoError(t, err)
	defer in.Close()
	q, err := in.Quarantined()
	require.NoError(t, err)
	require.Len(t, q, 1)
	require.Equal(t, bad.Version, q[0].Version)
}

// TestContentChangedAfterVerify: the loader hands the interpreter the bytes
// it checked, so content swapped in the slot is refused, not loaded.
func TestReadContentRefusesChangedContent(t *testing.T) {
	root := host(t, "7.11", "good-ipc-1001")
	in, err := installer.Open(root, installer.Options{Capabilities: testfiles.Capabilities(t, "7.11")})
	require.NoError(t, err)
	defer in.Close()
	r := read(t, root)
	dir := in.SlotDir(r.Active)
	e := r.Entry(r.Active)
	_, err = installer.ReadContent(dir, e.Digest)
	require.NoError(t, err)

	p := filepath.Join(dir, installer.ContentName)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	b[len(b)/2] ^= 1
	require.NoError(t, os.WriteFile(p, b, 0o600))
	_, err = installer.ReadContent(dir, e.Digest)
	require.ErrorIs(t, err, installer.ErrSlotCorrupt)

	require.NoError(t, os.WriteFile(p, append(b, 0), 0o600))
	_, err = installer.ReadContent(dir, e.Digest)
	require.ErrorIs(t, err, installer.ErrSlotCorrupt)

	var other [32]byte
	_, err = installer.ReadContent(dir, other)
	require.ErrorIs(t, err, installer.ErrSlotCorrupt)
}

func TestLoadNothingInstalled(t *testing.T) {
	root := testtmp.Dir(t)
	l, crash, err := load(t, root)
	require.Nil(t, crash)
	require.NoError(t, err)
	require.Nil(t, l.Program)
	require.Equal(t, bootguard.WhyNoContent, l.Boot.Decision.Why)
}

// TestLoadAll: every channel of a root, in ascending order, each through
// its own record; a root with no channel loads nothing.
func TestLoadAll(t *testing.T) {
	root := host(t, "7.11", "good-ipc-1001", "good-ipc-1002")
	in, err := installer.Open(root, installer.Options{Capabilities: testfiles.Capabilities(t, "7.11")})
	require.NoError(t, err)
	defer in.Close()
	_, err = in.Boot(true) // 291's trial of 1002 loads and is marked good
	require.NoError(t, err)
	_, err = in.MarkGood()
	require.NoError(t, err)
	f, err := validator.Parse(testfiles.Channel(t, "good-ipc-1001"))
	require.NoError(t, err)
	f.Channel, f.ContentVersion = 7, 70
	data, err := validator.Encode(f)
	require.NoError(t, err)
	_, _, err = in.Install(data, installer.StageOptions{})
	require.NoError(t, err)
	caps := loader.Options{Capabilities: testfiles.Capabilities(t, "7.11")}
	ls, err := loader.LoadAll(in, caps)
	require.NoError(t, err)
	require.Len(t, ls, 2)
	require.Equal(t, []uint32{7, 291}, []uint32{ls[0].Channel, ls[1].Channel}, "ascending")
	require.Equal(t, []uint32{70, 1002}, []uint32{ls[0].Boot.Decision.Entry.Version, ls[1].Boot.Decision.Entry.Version})
	require.NotNil(t, ls[0].Program)
	require.NotNil(t, ls[1].Program)

	empty, err := installer.Open(testtmp.Dir(t), installer.Options{Capabilities: testfiles.Capabilities(t, "7.11")})
	require.NoError(t, err)
	defer empty.Close()
	ls, err = loader.LoadAll(empty, caps)
	require.NoError(t, err)
	require.Empty(t, ls)
}

// TestStoppedSpendsNoTry: after a clean stop (Stopped, as the agent calls it
// on SIGTERM) the next load of the trial spends no try; without one (a crash
// after the load) it spends one. Each load runs with its Installer closed
// before Stopped, as the agent's does.
func TestStoppedSpendsNoTry(t *testing.T) {
	root := host(t, "7.11", "good-ipc-1001", "good-ipc-1002") // 1002 on trial, 2 tries
	trial := func() bootguard.Entry {
		r := read(t, root)
		return *r.Entry(r.Active)
	}
	l, crash, err := load(t, root)
	require.Nil(t, crash)
	require.NoError(t, err)
	require.Equal(t, uint8(1), l.Boot.Decision.Entry.Tries, "the first load spends a try")
	require.NoError(t, loader.Stopped([]loader.Loaded{l}))
	require.Equal(t, bootguard.CrumbStopped, trial().Crumb)

	for range 2 { // clean stops: the trial keeps its try
		l, _, err = load(t, root)
		require.NoError(t, err)
		require.Equal(t, bootguard.WhyTrial, l.Boot.Decision.Why)
		require.Equal(t, uint8(1), trial().Tries, "a clean stop spent no try")
		require.Equal(t, bootguard.CrumbLoaded, trial().Crumb)
		require.NoError(t, loader.Stopped([]loader.Loaded{l}))
	}

	// No clean stop (the agent was killed): the next load spends a try.
	l, _, err = load(t, root)
	require.NoError(t, err)
	require.Equal(t, uint8(1), trial().Tries)
	l, _, err = load(t, root)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyTrial, l.Boot.Decision.Why)
	require.Equal(t, uint8(0), trial().Tries, "a crash after the load spends a try")

	// GOOD content: a clean stop records nothing.
	in, err := installer.Open(root, installer.Options{Capabilities: testfiles.Capabilities(t, "7.11")})
	require.NoError(t, err)
	_, err = in.MarkGood()
	require.NoError(t, err)
	in.Close()
	l, _, err = load(t, root)
	require.NoError(t, err)
	require.Equal(t, bootguard.WhyGood, l.Boot.Decision.Why)
	before := read(t, root)
	require.NoError(t, loader.Stopped([]loader.Loaded{l}))
	require.Equal(t, before, read(t, root), "nothing written")
}

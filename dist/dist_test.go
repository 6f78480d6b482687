package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/tufrepo"
)

// The tests in this file build nothing and run in every 'go test ./...'.

// TestPathsAreHostconfigs: the packages put the root and the configuration
// where ringfenced and the offline tools look by default.
func TestPathsAreHostconfigs(t *testing.T) {
	require.Equal(t, hostconfig.DefaultRoot, hostRoot)
	require.Equal(t, hostconfig.DefaultPath, hostConfig)
	require.Equal(t, filepath.Dir(hostconfig.DefaultPath), hostConfDir)
}

// TestAssetsRender: every script and file renders with the install paths,
// none left with an unfilled @NAME@.
func TestAssetsRender(t *testing.T) {
	err := fs.WalkDir(assets, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".tmpl") {
			return err
		}
		b, err := renderAsset(p, installPaths)
		require.NoError(t, err, p)
		require.NotRegexp(t, `@[A-Z]+@`, string(b), p)
		return nil
	})
	require.NoError(t, err)
	_, err = renderAsset("scripts/ringfenced.postinst", map[string]string{"ROOT": "/x"})
	require.ErrorContains(t, err, "has no value")
}

func testRoot(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	_, err := tufrepo.Init(filepath.Join(dir, "repo"), filepath.Join(dir, "keys"), tufrepo.InitOptions{KeyType: tufrepo.KeyEd25519})
	require.NoError(t, err)
	return filepath.Join(dir, "repo", "metadata", "root.json")
}

// TestVendorValuesChecked: a build without the vendor's values, or with
// values ringfenced would refuse, stops before building anything, saying
// what to pass.
func TestVendorValuesChecked(t *testing.T) {
	root := testRoot(t)
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(s), 0o600))
		return p
	}
	caps291 := write("caps.json", `{"format": "ringfence-capabilities/v1", "sensor": "9.1", "channels": [292, 293], "template_types": []}`)
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no root", Options{ServerURL: "https://r.example.com"}, "VENDOR_ROOT is not set"},
		{"no url", Options{VendorRoot: root}, "SERVER_URL is not set"},
		{"bad url", Options{VendorRoot: root, ServerURL: "ftp://r.example.com"}, "want the server's base URL"},
		{"url with query", Options{VendorRoot: root, ServerURL: "https://r.example.com/?x=1"}, "want the server's base URL"},
		{"missing root", Options{VendorRoot: filepath.Join(dir, "none.json"), ServerURL: "https://r.example.com"}, "VENDOR_ROOT"},
		{"not root", Options{VendorRoot: write("ts.json", `{"signed": {"_type": "timestamp"}, "signatures": [{}]}`), ServerURL: "https://r.example.com"}, `TUF "timestamp" metadata, not root`},
		{"unsigned", Options{VendorRoot: write("u.json", `{"signed": {"_type": "root", "expires": "2999-01-01T00:00:00Z"}, "signatures": []}`), ServerURL: "https://r.example.com"}, "not signed"},
		{"expired", Options{VendorRoot: write("e.json", `{"signed": {"_type": "root", "version": 3, "expires": "2001-01-01T00:00:00Z"}, "signatures": [{}]}`), ServerURL: "https://r.example.com"}, "root version 3 expired"},
		{"bad caps", Options{VendorRoot: root, ServerURL: "https://r.example.com", VendorCaps: write("bad.json", "{")}, "VENDOR_CAPS"},
		{"channel the agent does not load", Options{VendorRoot: root, ServerURL: "https://r.example.com", VendorCaps: caps291, Channels: []uint32{291}}, "291 is not one of them"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadVendor(tc.o)
			require.ErrorContains(t, err, tc.want)
		})
	}
	v, err := loadVendor(Options{VendorRoot: root, ServerURL: "https://r.example.com", VendorCaps: caps291})
	require.NoError(t, err)
	require.Equal(t, []uint32{292, 293}, v.Channels, "the manifest's channels by default")
	require.Equal(t, "9.1", v.CapsSensor)
	v, err = loadVendor(Options{VendorRoot: root, ServerURL: "https://r.example.com"})
	require.NoError(t, err)
	require.Equal(t, []uint32{DefaultChannel}, v.Channels)
	require.Nil(t, v.Caps, "no manifest embedded: the built-in one applies")

	var out, errb bytes.Buffer
	require.Equal(t, 1, run(context.Background(), []string{"--server-url", "https://r.example.com", "--vendor-root", ""}, &out, &errb))
	require.Contains(t, errb.String(), "make dist VENDOR_ROOT=path/to/root.json SERVER_URL=")
}

// TestHostConfigFile: the packaged configuration parses as ringfenced reads
// it, and is the same for every build with the same channels, so that an
// upgrade never makes dpkg ask about a conffile the admin edited. (This test
// binary embeds nothing, so it adds the two keys a vendor build fills in;
// TestPackagedDaemonUsesVendorValues runs it on a vendor build.)
func TestHostConfigFile(t *testing.T) {
	b := &builder{o: Options{Version: "1.0.0"}, vendor: Vendor{RootSHA256: "abc123", ServerURL: "https://r.example.com", Channels: []uint32{291, 292}}}
	conf, err := b.hostConfigFile()
	require.NoError(t, err)
	other := &builder{o: Options{Version: "2.0.0"}, vendor: Vendor{RootSHA256: "def456", ServerURL: "https://s.example.com", Caps: []byte("{}"), Channels: []uint32{291, 292}}}
	conf2, err := other.hostConfigFile()
	require.NoError(t, err)
	require.Equal(t, string(conf), string(conf2), "the conffile does not change with the version or the vendor's values")
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "root.json"), []byte("{}"), 0o600))
	c, err := hostconfig.Parse(append(conf, "\nrepository = \"https://r.example.com/\"\ntrusted_root = \"root.json\"\n"...), dir)
	require.NoError(t, err, "%s", conf)
	require.Equal(t, []uint32{291, 292}, c.Followed())
	require.Equal(t, hostconfig.DefaultRoot, c.Root)
}

func TestVersions(t *testing.T) {
	for _, ok := range []string{"1.2.3", "0.0.0+124.g1a7d55d10d00", "1.4.0~rc1", "2"} {
		require.NoError(t, checkVersion(ok), ok)
	}
	for _, bad := range []string{"", "v1.2.3", "1.2.3-4", "1..2", "1.2 3", "abc"} {
		require.Error(t, checkVersion(bad), bad)
	}
	for in, want := range map[string][]string{
		"v1.2.0-0-gabcdef012345": {"1.2.0", ""},
		"v1.2.0-5-gabcdef012345": {"1.2.0", "5", "abcdef012345"},
	} {
		m := describeRE.FindStringSubmatch(in)
		require.NotNil(t, m, in)
		require.Equal(t, want[0], m[1])
		if len(want) > 2 {
			require.Equal(t, want[1], m[2])
			require.Equal(t, want[2], m[3])
		}
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git: the default version and SOURCE_DATE_EPOCH come from it")
	}
	dir, err := moduleRoot(context.Background())
	require.NoError(t, err)
	v, err := gitVersion(context.Background(), dir)
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	require.NoError(t, checkVersion(v), "git describe gives a version dpkg and rpm take: %s", v)
	v2, err := gitVersion(context.Background(), dir)
	require.NoError(t, err)
	require.Equal(t, v, v2, "the same commit, the same version")
	e, err := gitEpoch(context.Background(), dir)
	require.NoError(t, err)
	require.Greater(t, e, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Unix())
}

func TestParseFlags(t *testing.T) {
	ch, err := parseChannels("292, 291,292")
	require.NoError(t, err)
	require.Equal(t, []uint32{291, 292}, ch)
	_, err = parseChannels("0")
	require.Error(t, err)
	_, err = parseEpoch("yesterday")
	require.ErrorContains(t, err, "SOURCE_DATE_EPOCH")
	e, err := parseEpoch("")
	require.NoError(t, err)
	require.Zero(t, e)
}

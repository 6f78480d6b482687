package msi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/testbin"
)

func TestMSIVersion(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3":                         "1.2.3",
		"1.2.3":                          "1.2.3",
		"v1.2":                           "1.2.0",
		"v1.2.3-4-gabc1234":              "1.2.3.4",
		"v1.2.3-4-gabc1234def56-dirty":   "1.2.3.4",
		"1.2.3+4.gabc1234def5":           "1.2.3.4", // dist's development versions
		"0.0.0+812.g30bdf4f0a1b2":        "0.0.0.812",
		"v1.3.0-rc1":                     "1.3.0",
		"1.3.0~rc1":                      "1.3.0",
		"v1.3.0-rc1-2-gabcdef0":          "1.3.0.2",
		"v255.255.65535-65535-gabcdef01": "255.255.65535.65535",
	} {
		got, err := MSIVersion(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "30bdf4f-dirty", "v1", "1.x", "256.0.0", "1.256.0", "1.0.65536", "1.0.0-65536-gabcdef0", "1.2.3.4", "1.2.3a"} {
		_, err := MSIVersion(bad)
		require.Error(t, err, bad)
	}
}

func TestNameUUID(t *testing.T) {
	d := sha256.Sum256([]byte("x"))
	p, k := nameUUID("product", d[:]), nameUUID("package", d[:])
	re := regexp.MustCompile(`^\{[0-9A-F]{8}-[0-9A-F]{4}-5[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}\}$`)
	require.Regexp(t, re, p)
	require.Regexp(t, re, k)
	require.NotEqual(t, p, k)
	require.Equal(t, p, nameUUID("product", d[:]))
}

// TestBuildErrors: what Build says before it runs anything.
func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "x.exe")
	require.NoError(t, os.WriteFile(exe, []byte("MZ fake"), 0o644))
	elf := filepath.Join(dir, "x")
	require.NoError(t, os.WriteFile(elf, []byte("\x7fELF"), 0o644))
	ok := Options{Version: "v1.2.3", Ringfenced: exe, Ringfence: exe}
	out := filepath.Join(dir, "out.msi")

	o := ok
	o.Wixl = filepath.Join(dir, "no-wixl")
	err := Build(context.Background(), o, out)
	require.ErrorIs(t, err, ErrToolMissing)
	require.Contains(t, err.Error(), "install Debian's wixl and msitools packages (make deps)")

	requireTools(t)
	o = ok
	o.Version = "30bdf4f-dirty"
	require.ErrorContains(t, Build(context.Background(), o, out), "MAJOR.MINOR")
	o = ok
	o.Arch = "arm64"
	require.ErrorContains(t, Build(context.Background(), o, out), "only x64")
	o = ok
	o.Ringfence = elf
	require.ErrorContains(t, Build(context.Background(), o, out), "not a Windows executable")
	o = ok
	o.Ringfenced = ""
	require.ErrorContains(t, Build(context.Background(), o, out), "no path for ringfenced.exe")
	_, err = os.Stat(out)
	require.ErrorIs(t, err, os.ErrNotExist, "nothing written")
}

// requireTools skips the test where the tools are missing.
func requireTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"wixl", "msibuild", "msiinfo"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED the .msi tests: no %s; 'make deps' installs wixl and msitools (Debian's packages)", tool)
		}
	}
}

// windowsBinaries builds ringfenced.exe and ringfence.exe, once per test
// process.
func windowsBinaries(t *testing.T) (ringfenced, ringfence string) {
	t.Helper()
	dir := testbin.BuildWith(t, testbin.Options{
		Flags: []string{"-trimpath"},
		Env:   []string{"GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0"},
	}, "../../cmd/ringfenced", "../../cmd/ringfence")
	return filepath.Join(dir, "ringfenced.exe"), filepath.Join(dir, "ringfence.exe")
}

// testConfig is a configuration ringfenced loads and runs with (it polls a
// port nothing listens on, and goes on polling).
const testConfig = `# ringfenced.toml for the .msi tests
repository = "http://127.0.0.1:9/"
trusted_root = "root.json"
channels = [291]
`

const testEpoch = 1700000000 // 2023-11-14T22:13:20Z

func testOptions(t *testing.T, version string) Options {
	ringfenced, ringfence := windowsBinaries(t)
	return Options{
		Version:         version,
		Arch:            "x64",
		Ringfenced:      ringfenced,
		Ringfence:       ringfence,
		Config:          []byte(testConfig),
		TrustedRoot:     []byte("{}"),
		SourceDateEpoch: testEpoch,
	}
}

func build(t *testing.T, o Options) (string, time.Duration) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ringfence.msi")
	start := time.Now()
	require.NoError(t, Build(context.Background(), o, out))
	return out, time.Since(start)
}

// export reads one table with msiinfo: a map per row, by column name.
func export(t *testing.T, msi, table string) []map[string]string {
	t.Helper()
	out, err := exec.Command("msiinfo", "export", msi, table).Output()
	require.NoError(t, err, "msiinfo export %s", table)
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(string(out), "\r\n", "\n"), "\n"), "\n")
	require.GreaterOrEqual(t, len(lines), 3, "msiinfo export %s: %q", table, out)
	cols := strings.Split(lines[0], "\t")
	var rows []map[string]string
	for _, l := range lines[3:] {
		f := strings.Split(l, "\t")
		row := map[string]string{}
		for i, c := range cols {
			if i < len(f) {
				row[c] = f[i]
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// byKey indexes rows by a column.
func byKey(rows []map[string]string, col string) map[string]map[string]string {
	m := map[string]map[string]string{}
	for _, r := range rows {
		m[r[col]] = r
	}
	return m
}

// TestPackage checks the .msi's tables with msiinfo: files, components and
// directories, the service, the custom actions and their order, the
// upgrade, the summary.
func TestPackage(t *testing.T) {
	requireTools(t)
	o := testOptions(t, "v1.2.3-4-gabc1234-dirty")
	msi, took := build(t, o)
	t.Logf("built %s in %v", msi, took.Round(time.Millisecond))

	out, err := exec.Command("msiinfo", "tables", msi).Output()
	require.NoError(t, err)
	tables := strings.Fields(string(out))
	for _, want := range []string{"File", "Component", "Directory", "FeatureComponents", "ServiceInstall", "ServiceControl",
		"CustomAction", "InstallExecuteSequence", "Upgrade", "Property", "Registry", "CreateFolder", "LaunchCondition", "Media"} {
		require.Contains(t, tables, want)
	}

	// Files, and where their components put them.
	size := func(p string) string {
		st, err := os.Stat(p)
		require.NoError(t, err)
		return strconv.FormatInt(st.Size(), 10)
	}
	files := byKey(export(t, msi, "File"), "File")
	require.Len(t, files, 4)
	for name, want := range map[string][2]string{
		"ringfenced.exe":  {"Ringfenced", size(o.Ringfenced)},
		"ringfence.exe":   {"Ringfence", size(o.Ringfence)},
		"ringfenced.toml": {"Config", strconv.Itoa(len(o.Config))},
		"root.json":       {"TrustedRoot", strconv.Itoa(len(o.TrustedRoot))},
	} {
		require.Contains(t, files, name)
		require.Equal(t, name, files[name]["FileName"])
		require.Equal(t, want[0], files[name]["Component_"], name)
		require.Equal(t, want[1], files[name]["FileSize"], name)
	}
	dirs := byKey(export(t, msi, "Directory"), "Directory")
	require.Equal(t, map[string]string{"Directory": "INSTALLDIR", "Directory_Parent": "ProgramFiles64Folder", "DefaultDir": "Ringfence"}, dirs["INSTALLDIR"])
	require.Equal(t, map[string]string{"Directory": "DATADIR", "Directory_Parent": "CommonAppDataFolder", "DefaultDir": "Ringfence"}, dirs["DATADIR"])
	require.Equal(t, map[string]string{"Directory": "ROOTDIR", "Directory_Parent": "DATADIR", "DefaultDir": "root"}, dirs["ROOTDIR"])
	comps := byKey(export(t, msi, "Component"), "Component")
	// Attributes: 256 64-bit, 16 Permanent, 128 NeverOverwrite.
	for name, want := range map[string][3]string{
		"Ringfenced":  {"INSTALLDIR", "256", "ringfenced.exe"},
		"Ringfence":   {"INSTALLDIR", "256", "ringfence.exe"},
		"Config":      {"DATADIR", "400", "ringfenced.toml"},
		"TrustedRoot": {"DATADIR", "400", "root.json"},
		"Root":        {"ROOTDIR", "272", ""},
	} {
		require.Contains(t, comps, name)
		require.Equal(t, want[0], comps[name]["Directory_"], name)
		require.Equal(t, want[1], comps[name]["Attributes"], name)
		require.Equal(t, want[2], comps[name]["KeyPath"], name)
	}
	require.Equal(t, []map[string]string{{"Directory_": "ROOTDIR", "Component_": "Root"}}, export(t, msi, "CreateFolder"))
	require.Len(t, export(t, msi, "FeatureComponents"), 5)

	// The service, as `ringfenced install` registers it.
	svc := export(t, msi, "ServiceInstall")
	require.Len(t, svc, 1)
	require.Equal(t, hostconfig.ServiceName, svc[0]["Name"])
	require.Equal(t, "Ringfence updater", svc[0]["DisplayName"])
	require.Equal(t, hostconfig.ServiceDescription, svc[0]["Description"])
	require.Equal(t, "16", svc[0]["ServiceType"], "own process")
	require.Equal(t, "2", svc[0]["StartType"], "automatic")
	require.Equal(t, "1", svc[0]["ErrorControl"], "normal")
	require.Equal(t, `run --config "[CommonAppDataFolder]Ringfence\ringfenced.toml"`, svc[0]["Arguments"])
	require.Equal(t, "Ringfenced", svc[0]["Component_"], "installed with ringfenced.exe")
	ctl := export(t, msi, "ServiceControl")
	require.Len(t, ctl, 1)
	require.Equal(t, hostconfig.ServiceName, ctl[0]["Name"])
	// 0x02 stop on install, 0x20 stop on uninstall, 0x80 delete on uninstall.
	require.Equal(t, "162", ctl[0]["Event"])
	require.Equal(t, "1", ctl[0]["Wait"])
	reg := byKey(export(t, msi, "Registry"), "Registry")
	require.Equal(t, `#%%SystemRoot%\System32\EventCreate.exe`, reg["EventLogMessageFile"]["Value"], "REG_EXPAND_SZ")
	require.Equal(t, `SYSTEM\CurrentControlSet\Services\EventLog\Application\ringfenced`, reg["EventLogMessageFile"]["Key"])
	require.Equal(t, "#7", reg["EventLogTypes"]["Value"])

	// Custom actions: the ACLs, the recovery actions, the start.
	// 50 exe named by a property, +0x400 deferred, +0x800 no impersonation
	// (LocalSystem), +0x40 return ignored; 51 set a property.
	ca := byKey(export(t, msi, "CustomAction"), "Action")
	for name, want := range map[string][3]string{
		"RingfenceSetIcacls":   {"51", "RINGFENCE_ICACLS", `[System64Folder]icacls.exe`},
		"RingfenceSetSc":       {"51", "RINGFENCE_SC", `[System64Folder]sc.exe`},
		"RingfenceAclData":     {"3122", "RINGFENCE_ICACLS", `"[CommonAppDataFolder]Ringfence" /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F`},
		"RingfenceAclRoot":     {"3122", "RINGFENCE_ICACLS", `"[CommonAppDataFolder]Ringfence\root" /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F`},
		"RingfenceRecovery":    {"3122", "RINGFENCE_SC", `failure ringfenced reset= 3600 actions= restart/2000`},
		"RingfenceFailureFlag": {"3186", "RINGFENCE_SC", `failureflag ringfenced 1`},
		"RingfenceStart":       {"3186", "RINGFENCE_SC", `start ringfenced`},
	} {
		require.Contains(t, ca, name)
		require.Equal(t, want, [3]string{ca[name]["Type"], ca[name]["Source"], ca[name]["Target"]}, name)
	}
	seq := map[string]int{}
	cond := map[string]string{}
	for _, r := range export(t, msi, "InstallExecuteSequence") {
		n, err := strconv.Atoi(r["Sequence"])
		require.NoError(t, err)
		seq[r["Action"]], cond[r["Action"]] = n, r["Condition"]
	}
	order := func(names ...string) {
		t.Helper()
		for i := 1; i < len(names); i++ {
			require.Contains(t, seq, names[i-1])
			require.Contains(t, seq, names[i])
			require.Less(t, seq[names[i-1]], seq[names[i]], "%s before %s", names[i-1], names[i])
		}
	}
	order("FindRelatedProducts", "LaunchConditions", "CostFinalize", "RingfenceSetIcacls", "RingfenceSetSc", "InstallValidate",
		"RemoveExistingProducts", "InstallInitialize", "StopServices", "DeleteServices", "RemoveFiles", "CreateFolders",
		"RingfenceAclData", "RingfenceAclRoot", "InstallFiles", "WriteRegistryValues", "InstallServices",
		"RingfenceRecovery", "RingfenceFailureFlag", "StartServices", "RingfenceStart", "InstallFinalize")
	require.Equal(t, seq["InstallValidate"]+1, seq["RemoveExistingProducts"], "the old version goes first, as a whole")
	for _, a := range []string{"RingfenceAclData", "RingfenceAclRoot", "RingfenceRecovery", "RingfenceFailureFlag", "RingfenceStart"} {
		require.Equal(t, `NOT REMOVE~="ALL"`, cond[a], "%s runs on install, repair and upgrade, not on uninstall", a)
	}

	// Upgrades.
	props := map[string]string{}
	for _, r := range export(t, msi, "Property") {
		props[r["Property"]] = r["Value"]
	}
	require.Equal(t, UpgradeCode, props["UpgradeCode"])
	require.Equal(t, "1.2.3.4", props["ProductVersion"])
	require.Equal(t, "Ringfence", props["ProductName"])
	require.Equal(t, "1", props["ALLUSERS"], "per machine")
	require.Equal(t, "v1.2.3-4-gabc1234-dirty", props["RINGFENCE_VERSION"])
	require.Regexp(t, `^\{[0-9A-F-]{36}\}$`, props["ProductCode"])
	upg := byKey(export(t, msi, "Upgrade"), "ActionProperty")
	require.Len(t, upg, 2)
	for _, u := range upg {
		require.Equal(t, UpgradeCode, u["UpgradeCode"])
	}
	// 256 minimum inclusive, 512 maximum inclusive, 2 only detect.
	require.Equal(t, map[string]string{"UpgradeCode": UpgradeCode, "VersionMin": "0.0.0", "VersionMax": "1.2.3.4", "Language": "", "Attributes": "768", "Remove": "", "ActionProperty": "RINGFENCE_OLDER_FOUND"}, upg["RINGFENCE_OLDER_FOUND"])
	require.Equal(t, map[string]string{"UpgradeCode": UpgradeCode, "VersionMin": "1.2.3.4", "VersionMax": "", "Language": "", "Attributes": "2", "Remove": "", "ActionProperty": "RINGFENCE_NEWER_FOUND"}, upg["RINGFENCE_NEWER_FOUND"])
	require.Contains(t, props["SecureCustomProperties"], "RINGFENCE_OLDER_FOUND")
	lc := export(t, msi, "LaunchCondition")
	require.Len(t, lc, 1)
	require.Equal(t, "NOT RINGFENCE_NEWER_FOUND OR Installed", lc[0]["Condition"])

	// The summary: x64, the fixed package code and times.
	sum, err := exec.Command("msiinfo", "suminfo", msi).Output()
	require.NoError(t, err)
	require.Contains(t, string(sum), "Template: x64;1033")
	data, err := os.ReadFile(msi)
	require.NoError(t, err)
	code, times, err := readSummary(data)
	require.NoError(t, err)
	require.Regexp(t, `^\{[0-9A-F]{8}-[0-9A-F]{4}-5`, code)
	require.NotEqual(t, props["ProductCode"], code)
	require.Equal(t, filetime(time.Unix(testEpoch, 0)), times[pidCreateDTM])
	require.Equal(t, filetime(time.Unix(testEpoch, 0)), times[pidLastSaveDTM])
}

// TestWithoutConfig: a package without a configuration or root.json has
// neither file nor their components, and the rest.
func TestWithoutConfig(t *testing.T) {
	requireTools(t)
	o := fakeOptions(t)
	o.Config, o.TrustedRoot = nil, nil
	msi, _ := build(t, o)
	files := byKey(export(t, msi, "File"), "File")
	require.Len(t, files, 2)
	require.Contains(t, files, "ringfenced.exe")
	require.Contains(t, files, "ringfence.exe")
	comps := byKey(export(t, msi, "Component"), "Component")
	require.Len(t, comps, 3)
	require.Equal(t, "272", comps["Root"]["Attributes"])
	require.Len(t, export(t, msi, "ServiceInstall"), 1)
}

func digest(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestReproducible: two builds of the same inputs are byte-identical (wixl
// alone is not: it writes a random package code and the time); another
// input gives another package, with other product and package codes.
func TestReproducible(t *testing.T) {
	requireTools(t)
	o := testOptions(t, "v1.2.3")
	a, took := build(t, o)
	time.Sleep(1100 * time.Millisecond) // another second: wixl's clock would show
	t.Setenv("SOURCE_DATE_EPOCH", "1")  // ignored: SourceDateEpoch is set
	t.Setenv("TZ", "Asia/Tokyo")        // ignored: wixl runs with TZ=UTC
	b, _ := build(t, o)
	require.Equal(t, digest(t, a), digest(t, b), "two builds of the same inputs")
	t.Logf("two builds of the real binaries (%v each): sha256 %s", took.Round(time.Millisecond), digest(t, a))

	// What changes what: small stand-ins for the binaries, for speed.
	o = fakeOptions(t)
	base, _ := build(t, o)
	codes := func(msi string) (product, pkg string) {
		for _, r := range export(t, msi, "Property") {
			if r["Property"] == "ProductCode" {
				product = r["Value"]
			}
		}
		data, err := os.ReadFile(msi)
		require.NoError(t, err)
		pkg, _, err = readSummary(data)
		require.NoError(t, err)
		return product, pkg
	}
	p0, k0 := codes(base)
	for name, change := range map[string]func(*Options){
		"config":  func(o *Options) { o.Config = append(bytes.Clone(o.Config), "# edited\n"...) },
		"version": func(o *Options) { o.Version = "v1.2.4" },
		"epoch":   func(o *Options) { o.SourceDateEpoch++ },
	} {
		o2 := o
		change(&o2)
		d, _ := build(t, o2)
		require.NotEqual(t, digest(t, base), digest(t, d), name)
		p, k := codes(d)
		require.NotEqual(t, p0, p, "%s: product code", name)
		require.NotEqual(t, k0, k, "%s: package code", name)
	}

	// SourceDateEpoch zero: $SOURCE_DATE_EPOCH, else 1980-01-01.
	o.SourceDateEpoch = 0
	t.Setenv("SOURCE_DATE_EPOCH", strconv.Itoa(testEpoch))
	e, _ := build(t, o)
	require.Equal(t, digest(t, base), digest(t, e), "SOURCE_DATE_EPOCH stands in for SourceDateEpoch")
	t.Setenv("SOURCE_DATE_EPOCH", "")
	f, _ := build(t, o)
	data, err := os.ReadFile(f)
	require.NoError(t, err)
	_, times, err := readSummary(data)
	require.NoError(t, err)
	require.Equal(t, filetime(time.Unix(minEpoch, 0)), times[pidCreateDTM])
	require.Equal(t, filetime(time.Unix(minEpoch, 0)), times[pidLastSaveDTM])
}

// fakeOptions are testOptions with small stand-ins for the binaries.
func fakeOptions(t *testing.T) Options {
	dir := t.TempDir()
	o := Options{Version: "v1.2.3", Config: []byte(testConfig), TrustedRoot: []byte("{}"), SourceDateEpoch: testEpoch}
	o.Ringfenced, o.Ringfence = filepath.Join(dir, "ringfenced.exe"), filepath.Join(dir, "ringfence.exe")
	require.NoError(t, os.WriteFile(o.Ringfenced, []byte("MZ ringfenced"), 0o755))
	require.NoError(t, os.WriteFile(o.Ringfence, []byte("MZ ringfence"), 0o755))
	return o
}

// TestPatchSummaryRefuses: a file that is not an .msi is refused, not
// patched.
func TestPatchSummaryRefuses(t *testing.T) {
	data := bytes.Repeat([]byte{0}, 1024)
	err := patchSummary(data, "{00000000-0000-0000-0000-000000000000}", time.Unix(testEpoch, 0))
	require.ErrorContains(t, err, "not a compound file")
	require.Equal(t, bytes.Repeat([]byte{0}, 1024), data)
}

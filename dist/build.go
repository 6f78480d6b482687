package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ringfence/ringfence/dist/msi"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/boundedio"
	"github.com/ringfence/ringfence/internal/vendorbuild"
	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/validator"
)

// Options are the inputs of a build. Equal options on the same source tree
// and Go toolchain give byte-identical artifacts.
type Options struct {
	// Out receives the packages and SHA256SUMS.
	Out string
	// VendorRoot is the path of the fleet's trusted root.json; ServerURL
	// the rollout server's base URL as hosts reach it. Both required.
	VendorRoot, ServerURL string
	// VendorCaps is the path of the reference agent's capability manifest;
	// empty embeds none (the built-in sensor's applies).
	VendorCaps string
	// Channels the packaged configuration follows; empty: the manifest's
	// channels, else DefaultChannel.
	Channels []uint32
	// Version of the packages and of ringfenced; empty: from git describe.
	Version string
	// Epoch is SOURCE_DATE_EPOCH: every mtime and the packages' build
	// time. Zero: the last commit's time.
	Epoch int64
	// Arches are the GOARCH values to package (linux).
	Arches []string
	// Maintainer of the packages.
	Maintainer string
	// Log gets progress lines; nil discards them.
	Log io.Writer
}

// DefaultChannel is the channel the packaged configuration follows when
// neither --channels nor the capability manifest names any.
const DefaultChannel = 291

// Result is what a build wrote.
type Result struct {
	Version string
	Epoch   int64
	Vendor  Vendor
	// Dir is Options.Out; Artifacts the files written there, sorted, with
	// SHA256SUMS last.
	Dir       string
	Artifacts []Artifact
}

// Artifact is one file in the output directory.
type Artifact struct {
	Name   string
	Size   int64
	SHA256 string
}

// Vendor is what ringfenced embeds.
type Vendor struct {
	Root       []byte
	RootSHA256 string
	ServerURL  string
	// Caps is the manifest's bytes (nil: the built-in sensor's) and
	// CapsSensor the sensor version it describes.
	Caps       []byte
	CapsSensor string
	Channels   []uint32
}

// Print lists the build the way 'make dist' shows it.
func (r Result) Print(w io.Writer) {
	fmt.Fprintf(w, "dist: version %s, SOURCE_DATE_EPOCH %d (%s)\n", r.Version, r.Epoch, time.Unix(r.Epoch, 0).UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "dist: ringfenced embeds root.json sha256 %s, server %s, %s; the configuration follows channels %s\n",
		r.Vendor.RootSHA256, r.Vendor.ServerURL, r.Vendor.capsLine(), joinChannels(r.Vendor.Channels))
	for _, a := range r.Artifacts {
		fmt.Fprintf(w, "%s  %9d  %s\n", a.SHA256, a.Size, filepath.Join(r.Dir, a.Name))
	}
}

func (v Vendor) capsLine() string {
	if v.Caps == nil {
		return "the built-in reference sensor " + sensor.Version + "'s capabilities"
	}
	return fmt.Sprintf("capabilities of sensor %s (sha256 %s)", v.CapsSensor, vendorbuild.SHA256(v.Caps))
}

// Build compiles the binaries and writes every package of o into o.Out.
func Build(ctx context.Context, o Options) (Result, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if len(o.Arches) == 0 {
		return Result{}, errors.New("no --arch to build")
	}
	for _, a := range o.Arches {
		if !slices.Contains([]string{"amd64", "arm64"}, a) {
			return Result{}, fmt.Errorf("--arch %s: dist packages amd64 and arm64", a)
		}
	}
	moduleDir, err := moduleRoot(ctx)
	if err != nil {
		return Result{}, err
	}
	v, err := loadVendor(o)
	if err != nil {
		return Result{}, err
	}
	if o.Version == "" {
		if o.Version, err = gitVersion(ctx, moduleDir); err != nil {
			return Result{}, err
		}
	}
	if err := checkVersion(o.Version); err != nil {
		return Result{}, err
	}
	if o.Epoch == 0 {
		if o.Epoch, err = gitEpoch(ctx, moduleDir); err != nil {
			return Result{}, err
		}
	}
	if o.Maintainer == "" {
		o.Maintainer = "Ringfence <ringfence@example.com>"
	}
	stage, err := os.MkdirTemp("", "ringfence-dist-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(stage)
	b := &builder{o: o, vendor: v, moduleDir: moduleDir, stage: stage, mtime: time.Unix(o.Epoch, 0).UTC()}
	if err := b.writeOverlay(); err != nil {
		return Result{}, err
	}
	if err := b.renderFiles(); err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return Result{}, err
	}
	if err := removeOldArtifacts(o.Out); err != nil {
		return Result{}, err
	}
	var names []string
	for _, arch := range o.Arches {
		bin := filepath.Join(stage, "linux-"+arch)
		fmt.Fprintf(o.Log, "dist: go build linux/%s\n", arch)
		if err := b.goBuild(ctx, "linux", arch, bin, "./cmd/ringfenced", "./cmd/ringfence", "./cmd/ringfence-server"); err != nil {
			return Result{}, err
		}
		for _, p := range b.linuxPackages(arch, bin) {
			for _, format := range []string{"deb", "rpm"} {
				name, err := b.writePackage(p, format)
				if err != nil {
					return Result{}, fmt.Errorf("%s %s (%s): %w", p.name, format, arch, err)
				}
				fmt.Fprintf(o.Log, "dist: wrote %s\n", name)
				names = append(names, name)
			}
		}
	}
	win, err := b.windowsPackages(ctx)
	if err != nil {
		return Result{}, err
	}
	names = append(names, win...)
	return b.finish(names)
}

// builder carries one build's state.
type builder struct {
	o         Options
	vendor    Vendor
	moduleDir string
	stage     string // temporary: binaries, rendered files, the overlay
	overlay   string // go build -overlay file
	mtime     time.Time
}

// loadVendor reads and checks the vendor's values: a build without them, or
// with values ringfenced would refuse at start, makes packages that do not
// run as installed, so it stops here instead.
func loadVendor(o Options) (Vendor, error) {
	var v Vendor
	if o.VendorRoot == "" {
		return v, errors.New("VENDOR_ROOT is not set: a package carries the fleet's trusted root.json, so that it installs and runs with no hand edits. " +
			"Run make dist VENDOR_ROOT=path/to/root.json SERVER_URL=https://rollout.example.com (root.json is the repository's metadata/root.json, which 'ringfence-server repo init' wrote)")
	}
	if o.ServerURL == "" {
		return v, errors.New("SERVER_URL is not set: ringfenced takes it as its repository and telemetry endpoint. " +
			"Run make dist VENDOR_ROOT=" + o.VendorRoot + " SERVER_URL=<the rollout server's URL as hosts reach it, e.g. https://rollout.example.com>")
	}
	root, err := boundedio.ReadFile(o.VendorRoot, hostconfig.MaxTrustedRoot)
	if err != nil {
		return v, fmt.Errorf("VENDOR_ROOT: %w", err)
	}
	if err := checkRoot(root, time.Now()); err != nil {
		return v, fmt.Errorf("VENDOR_ROOT %s: %w", o.VendorRoot, err)
	}
	v.Root, v.RootSHA256 = root, vendorbuild.SHA256(root)
	u, err := url.Parse(o.ServerURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(o.ServerURL, " \n\"") {
		return v, fmt.Errorf("SERVER_URL %q: want the server's base URL, http(s)://host[:port][/path], as hosts reach it", o.ServerURL)
	}
	v.ServerURL = o.ServerURL
	caps := sensor.DefaultCapabilities()
	if o.VendorCaps != "" {
		b, err := boundedio.ReadFile(o.VendorCaps, validator.MaxCapabilitiesSize)
		if err != nil {
			return v, fmt.Errorf("VENDOR_CAPS: %w", err)
		}
		if caps, err = validator.ParseCapabilities(b); err != nil {
			return v, fmt.Errorf("VENDOR_CAPS %s: %w", o.VendorCaps, err)
		}
		v.Caps, v.CapsSensor = b, caps.Sensor
	}
	v.Channels = o.Channels
	if len(v.Channels) == 0 {
		v.Channels = caps.Channels
	}
	if len(v.Channels) == 0 {
		v.Channels = []uint32{DefaultChannel}
	}
	for _, ch := range v.Channels {
		if !caps.LoadsChannel(ch) {
			return v, fmt.Errorf("CHANNELS: the agent (sensor %s) loads channels %v by its capability manifest; %d is not one of them, and ringfenced would refuse to start", caps.Sensor, caps.Channels, ch)
		}
	}
	return v, nil
}

// checkRoot is a first look at a trusted root: TUF root metadata, signed,
// not expired. The daemon's TUF client checks the rest on first use.
func checkRoot(b []byte, now time.Time) error {
	var md struct {
		Signed struct {
			Type    string    `json:"_type"`
			Version int       `json:"version"`
			Expires time.Time `json:"expires"`
		} `json:"signed"`
		Signatures []json.RawMessage `json:"signatures"`
	}
	if err := json.Unmarshal(b, &md); err != nil {
		return fmt.Errorf("not TUF metadata: %w (want the repository's metadata/root.json)", err)
	}
	switch {
	case md.Signed.Type != "root":
		return fmt.Errorf("TUF %q metadata, not root (want the repository's metadata/root.json)", md.Signed.Type)
	case len(md.Signatures) == 0:
		return errors.New("the root is not signed")
	case !md.Signed.Expires.After(now):
		return fmt.Errorf("root version %d expired at %s: hosts would refuse it; sign a new root ('ringfence-server keys rotate') and use that", md.Signed.Version, md.Signed.Expires.Format(time.RFC3339))
	}
	return nil
}

// writeOverlay maps internal/vendorbuild's placeholders to the vendor's
// values (go build -overlay): the values are then plain embedded bytes.
func (b *builder) writeOverlay() (err error) {
	b.overlay, err = writeOverlay(b.stage, b.moduleDir, b.vendor)
	return err
}

// writeOverlay writes v's values and a go build -overlay file that maps the
// placeholders of moduleDir's internal/vendorbuild to them into dir, and
// returns the overlay file's path.
func writeOverlay(dir, moduleDir string, v Vendor) (string, error) {
	vals := filepath.Join(dir, "vendor-values")
	if err := os.MkdirAll(vals, 0o700); err != nil {
		return "", err
	}
	pkg := filepath.Join(moduleDir, "internal", "vendorbuild")
	replace := map[string]string{}
	for placeholder, data := range map[string][]byte{
		vendorbuild.RootFile:         v.Root,
		vendorbuild.ServerURLFile:    []byte(v.ServerURL),
		vendorbuild.CapabilitiesFile: v.Caps,
	} {
		if _, err := os.Stat(filepath.Join(pkg, placeholder)); err != nil {
			return "", fmt.Errorf("the placeholder internal/vendorbuild/%s: %w", placeholder, err)
		}
		staged := filepath.Join(vals, filepath.Base(placeholder))
		if err := os.WriteFile(staged, data, 0o600); err != nil {
			return "", err
		}
		replace[filepath.Join(pkg, placeholder)] = staged
	}
	js, err := json.Marshal(map[string]any{"Replace": replace})
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "overlay.json")
	return path, os.WriteFile(path, js, 0o600)
}

// goBuild builds pkgs for goos/goarch into dir, reproducibly: no cgo,
// -trimpath, no VCS stamp, the version in main.version, symbols stripped,
// the vendor's values overlaid, and none of the caller's GOFLAGS.
func (b *builder) goBuild(ctx context.Context, goos, goarch, dir string, pkgs ...string) error {
	args := []string{"build", "-trimpath", "-buildvcs=false", "-overlay", b.overlay,
		"-ldflags", "-s -w -X main.version=" + b.o.Version, "-o", dir + string(filepath.Separator)}
	cmd := exec.CommandContext(ctx, "go", append(args, pkgs...)...)
	cmd.Dir = b.moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch, "GOFLAGS=", "GOAMD64=v1", "GOARM64=v8.0", "GOEXPERIMENT=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build for %s/%s: %w\n%s", goos, goarch, err, out.Bytes())
	}
	return nil
}

// windowsPackages builds the Windows installer (dist/msi): ringfenced.exe
// and ringfence.exe built as the Linux binaries are (-trimpath, the vendor
// overlay, the version), so the vendor's values are embedded in
// ringfenced.exe and the MSI installs no root.json, and a configuration
// naming the root and the channels. Without wixl and msibuild it builds
// nothing and says so (msi.ErrToolMissing): the Linux packages stand.
func (b *builder) windowsPackages(ctx context.Context) ([]string, error) {
	win := filepath.Join(b.stage, "windows-amd64")
	fmt.Fprintf(b.o.Log, "dist: go build windows/amd64\n")
	if err := b.goBuild(ctx, "windows", "amd64", win, "./cmd/ringfenced", "./cmd/ringfence"); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`# ringfenced's configuration: docs/ringfenced.md lists every key. The MSI
# installs it once and keeps your edits on upgrades. This build of
# ringfenced embeds the vendor's values (the rollout server's URL, the
# fleet's root.json, the agent's capability manifest); a key set here
# wins over each. 'ringfenced version' prints what the binary embeds.
root = '%s'
channels = [%s]
`, hostconfig.WindowsRoot, joinChannels(b.vendor.Channels))
	name := "ringfenced-" + b.o.Version + "-x64.msi"
	err := msi.Build(ctx, msi.Options{Version: b.o.Version, Arch: "amd64", SourceDateEpoch: b.mtime.Unix(),
		Ringfenced: filepath.Join(win, "ringfenced.exe"), Ringfence: filepath.Join(win, "ringfence.exe"),
		Config: []byte(conf)}, filepath.Join(b.o.Out, name))
	if errors.Is(err, msi.ErrToolMissing) {
		fmt.Fprintf(b.o.Log, "dist: SKIPPED the Windows .msi: %v\n", err)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("windows msi: %w", err)
	}
	return []string{name}, nil
}

// removeOldArtifacts clears what an earlier build left in out, so that
// SHA256SUMS lists exactly this build.
func removeOldArtifacts(out string) error {
	ents, err := os.ReadDir(out)
	if err != nil {
		return err
	}
	for _, e := range ents {
		n := e.Name()
		if e.Type().IsRegular() && (n == sumsFile || strings.HasSuffix(n, ".deb") || strings.HasSuffix(n, ".rpm") || strings.HasSuffix(n, ".msi")) {
			if err := os.Remove(filepath.Join(out, n)); err != nil {
				return err
			}
		}
	}
	return nil
}

const sumsFile = "SHA256SUMS"

// finish writes SHA256SUMS (sha256sum -c reads it) over names, sorted.
func (b *builder) finish(names []string) (Result, error) {
	slices.Sort(names)
	res := Result{Version: b.o.Version, Epoch: b.o.Epoch, Vendor: b.vendor, Dir: b.o.Out}
	var sums bytes.Buffer
	for _, n := range names {
		a, err := artifact(b.o.Out, n)
		if err != nil {
			return Result{}, err
		}
		fmt.Fprintf(&sums, "%s  %s\n", a.SHA256, n)
		res.Artifacts = append(res.Artifacts, a)
	}
	if err := atomicfile.WriteFile(filepath.Join(b.o.Out, sumsFile), sums.Bytes(), 0o644); err != nil {
		return Result{}, err
	}
	a, err := artifact(b.o.Out, sumsFile)
	if err != nil {
		return Result{}, err
	}
	res.Artifacts = append(res.Artifacts, a)
	return res, nil
}

func artifact(dir, name string) (Artifact, error) {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return Artifact{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Artifact{}, err
	}
	return Artifact{Name: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// moduleRoot is the directory of the module dist builds.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w (is go on PATH?)", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the ringfence module: run make dist from the repository")
	}
	return filepath.Dir(gomod), nil
}

// describeRE matches 'git describe --tags --long' output: tag, commits
// since, hash.
var describeRE = regexp.MustCompile(`^v?([0-9][0-9A-Za-z.]*)-([0-9]+)-g([0-9a-f]+)$`)

// gitVersion is the package version for the checked-out commit: the tag
// (v1.2.0 gives 1.2.0), with +N.gHASH when HEAD is N commits past it; with
// no tag, 0.0.0+N.gHASH, N counting every commit, so that a later commit's
// packages upgrade an earlier one's (dpkg and rpm both compare N as a
// number). The same commit always gives the same version.
func gitVersion(ctx context.Context, dir string) (string, error) {
	hash, err := git(ctx, dir, "rev-parse", "--short=12", "HEAD")
	if err != nil {
		return "", err
	}
	if d, err := git(ctx, dir, "describe", "--tags", "--long", "--abbrev=12"); err == nil {
		if m := describeRE.FindStringSubmatch(d); m != nil {
			if m[2] == "0" {
				return m[1], nil
			}
			return m[1] + "+" + m[2] + ".g" + m[3], nil
		}
	}
	n, err := git(ctx, dir, "rev-list", "--count", "HEAD")
	if err != nil {
		return "", err
	}
	return "0.0.0+" + n + ".g" + hash, nil
}

// gitEpoch is the last commit's time: SOURCE_DATE_EPOCH's default.
func gitEpoch(ctx context.Context, dir string) (int64, error) {
	s, err := git(ctx, dir, "log", "-1", "--format=%ct")
	if err != nil {
		return 0, err
	}
	return parseEpoch(s)
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return "", fmt.Errorf("git %s: %w (outside a git checkout, set VERSION and SOURCE_DATE_EPOCH)", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// versionRE is what both dpkg and rpm accept as an upstream version here.
var versionRE = regexp.MustCompile(`^[0-9][0-9A-Za-z.+~]*$`)

func checkVersion(v string) error {
	if !versionRE.MatchString(v) || strings.Contains(v, "..") || len(v) > 64 {
		return fmt.Errorf("VERSION %q: want a version dpkg and rpm both accept: a digit, then letters, digits, '.', '+' or '~' (1.4.0, 1.4.0+3.gabc123)", v)
	}
	return nil
}

// parseEpoch reads SOURCE_DATE_EPOCH; "" is 0 (take the last commit's).
func parseEpoch(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > 1<<32-1 {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH %q: want a Unix time in seconds (git log -1 --format=%%ct)", s)
	}
	return n, nil
}

func parseChannels(s string) ([]uint32, error) {
	var out []uint32
	for _, f := range splitList(s) {
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("CHANNELS %q: want channel numbers, e.g. 291,292", s)
		}
		if !slices.Contains(out, uint32(n)) {
			out = append(out, uint32(n))
		}
	}
	slices.Sort(out)
	return out, nil
}

func joinChannels(chs []uint32) string {
	s := make([]string, len(chs))
	for i, c := range chs {
		s[i] = strconv.FormatUint(uint64(c), 10)
	}
	return strings.Join(s, ", ")
}

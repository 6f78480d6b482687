// Package msi builds Ringfence's Windows installer, an .msi, on Linux with
// wixl (Debian's wixl package; msibuild from msitools post-processes it).
//
// What the package installs (ringfence.wxs.tmpl is the WiX source):
//
//   - ringfenced.exe and ringfence.exe in C:\Program Files\Ringfence;
//   - optionally ringfenced.toml and root.json in C:\ProgramData\Ringfence
//     (Options.Config, Options.TrustedRoot), Permanent and NeverOverwrite:
//     an upgrade keeps the host's own files, an uninstall leaves them;
//   - the root, C:\ProgramData\Ringfence\root (hostconfig.DefaultRoot),
//     Permanent: an uninstall removes the service and the programs and
//     leaves the root and the configuration, like a deb's remove;
//   - the service "ringfenced", registered by the MSI's ServiceInstall table
//     as `ringfenced install` registers it (cmd/ringfenced/service.go): auto
//     start, `run --config "C:\ProgramData\Ringfence\ringfenced.toml"`, and
//     the event-log source. The MSI stops it before it replaces files and
//     deletes it on uninstall.
//
// Where wixl falls short, and what is done instead:
//
//   - Recovery actions: wixl 0.101 has no util:ServiceConfig and no
//     MsiServiceConfigFailureActions table, so a deferred custom action
//     (LocalSystem) runs `sc.exe failure ringfenced reset= 3600 actions=
//     restart/2000`, the actions kardianos/service sets for `ringfenced
//     install`, and another `sc.exe failureflag ringfenced 1`, so that a
//     stop with an error exit code (how ringfenced reports a failure) also
//     triggers them.
//   - ACLs: wixl has no Permission/PermissionEx (no LockPermissions table);
//     deferred custom actions run icacls: SYSTEM and Administrators only,
//     inheritance removed, on C:\ProgramData\Ringfence and on its root.
//     Without this any user could read the host's keys, or create
//     ringfenced.toml before the administrator does (ProgramData lets users
//     create files) and have the LocalSystem service load it.
//   - Component/@Permanent and @NeverOverwrite are dropped by wixl 0.101
//     (with a warning), RegistryValue/@Type="expandable" is written as a
//     plain string, UpgradeVersion/@IncludeMaximum and Custom/@After are
//     ignored: Build sets the Component attributes, the registry value and
//     the upgrade row in the tables with msibuild (SQL), and the template
//     gives every custom action an explicit sequence number. Build fails if
//     wixl warns, so an attribute it drops cannot go unnoticed.
//
// Why the MSI registers the service itself rather than running
// `ringfenced install` from a custom action: `install` refuses a
// configuration that does not load, and an MSI is often deployed before
// its configuration is (or without one: Options.Config is optional);
// `install` fails when the service exists (repair, reinstall); and the MSI's
// own tables give stop-before-replace, delete-on-uninstall and rollback for
// free. The service is started by a last custom action whose failure is
// ignored: with no configuration yet it cannot start, and the install still
// succeeds (put the configuration in place, then `ringfenced start`).
//
// Versions: MSI product versions are numeric, major.minor.build (at most
// 255.255.65535), plus a fourth field MSI ignores when it compares versions.
// MSIVersion maps release and development versions: "v1.2.3" is 1.2.3;
// "v1.2.3-4-gabc1234[-dirty]" (git describe) and "1.2.3+4.gabc1234" (dist's
// development versions) are 1.2.3.4; other suffixes ("-rc1", "~rc1") are
// dropped. Upgrades: every installed Ringfence with an MSI version up to
// this one, this one included, is removed first (so two builds of one
// x.y.z replace each other, whatever their fourth field: MSI cannot order
// them); a newer one makes the install fail with a message.
//
// Reproducible: two builds from the same inputs are byte-identical. wixl
// (0.101) puts a random package code and the build time into the summary
// information; the cabinet takes the files' modification times. Build
// gives the files it copies the time Options.SourceDateEpoch, and replaces
// the package code and the timestamps in the summary information (in place;
// see cfb.go). The product code and the package code are name-based
// (UUIDv5-style) on a digest of every input: the same inputs give the same
// codes, any change gives new ones (a new product code makes every build a
// major upgrade, which is what replaces in place).
package msi

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/atomicfile"
)

// UpgradeCode identifies Ringfence across all its versions: Windows finds
// the installed version to replace by it. It must never change; a package
// with another upgrade code installs beside the old one instead of
// replacing it.
const UpgradeCode = "{D1AF963D-C7B0-42C8-8BB7-524F6159969F}"

// ErrToolMissing is wrapped by the error Build returns when wixl or
// msibuild is not installed.
var ErrToolMissing = errors.New("install Debian's wixl and msitools packages (make deps)")

//go:embed ringfence.wxs.tmpl
var wxsTemplate string

var tmpl = template.Must(template.New("ringfence.wxs").Funcs(template.FuncMap{"xml": xmlEscape}).Parse(wxsTemplate))

// wxsData is what the template is rendered with.
type wxsData struct {
	ProductCode, UpgradeCode string
	Version, MSIVersion      string
	// ServiceName and ServiceDescription are hostconfig's, the ones
	// `ringfenced install` registers.
	ServiceName, ServiceDescription string
	Config, TrustedRoot             bool
}

func xmlEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s)) // writes to a strings.Builder: cannot fail
	return b.String()
}

// Options are the inputs of a package.
type Options struct {
	// Version is a release or development version ("v1.2.3", git
	// describe's "v1.2.3-4-gabc1234-dirty", dist's "1.2.3+4.gabc1234");
	// MSIVersion says how it becomes the MSI's. The full string is shown in
	// the package's description and comments.
	Version string
	// Arch is the package's architecture; "x64" (also "amd64", or empty)
	// is the only one.
	Arch string
	// Ringfenced and Ringfence are the paths of the Windows binaries
	// (GOOS=windows GOARCH=amd64) of cmd/ringfenced and cmd/ringfence.
	Ringfenced, Ringfence string
	// Config, when not empty, is installed as
	// C:\ProgramData\Ringfence\ringfenced.toml, and TrustedRoot as
	// C:\ProgramData\Ringfence\root.json (the configuration can name it
	// `trusted_root = "root.json"`). Neither is overwritten by an upgrade
	// nor removed by an uninstall.
	Config, TrustedRoot []byte
	// SourceDateEpoch (Unix seconds) is the time written into the package:
	// its creation and save times, the files' times in its cabinet. Zero
	// means $SOURCE_DATE_EPOCH, or 1980-01-01 when that is unset.
	SourceDateEpoch int64
	// Wixl and Msibuild are the tools' paths; empty means from $PATH.
	Wixl, Msibuild string
}

// minEpoch is the earliest time a cabinet (MS-DOS date) can hold.
const minEpoch = 315532800 // 1980-01-01T00:00:00Z

var (
	versionCore = regexp.MustCompile(`^[vV]?([0-9]+)\.([0-9]+)(?:\.([0-9]+))?(.*)$`)
	// git describe's "-N-gHASH[-dirty]", or dist's "+N.gHASH".
	describeTail = regexp.MustCompile(`(?:-([0-9]+)-g[0-9a-f]{4,40}(?:-dirty)?|\+([0-9]+)\.g[0-9a-f]{4,40})$`)
)

// MSIVersion maps a release or development version to an MSI product
// version: MAJOR.MINOR[.PATCH] gives MAJOR.MINOR.PATCH (PATCH 0 when
// absent; MAJOR and MINOR at most 255, PATCH at most 65535); a
// development tail, git describe's "-N-gHASH" (optionally "-dirty") or
// dist's "+N.gHASH", adds N, the commits since the tag, as the fourth field
// (at most 65535); any other suffix ("-rc1", "~rc1", "+meta") is dropped.
// "v1.2.3" gives "1.2.3", "v1.2.3-4-gabc1234-dirty" and "1.2.3+4.gabc1234"
// give "1.2.3.4", "1.3.0~rc1" gives "1.3.0". A version without MAJOR.MINOR
// (a bare commit hash) is an error.
func MSIVersion(v string) (string, error) {
	m := versionCore.FindStringSubmatch(v)
	if m == nil {
		return "", fmt.Errorf("msi: version %q: want MAJOR.MINOR[.PATCH] (git describe --tags of a tag vX.Y.Z); tag a release, or pass v0.0.0-N-gHASH", v)
	}
	field := func(s string, limit uint64, what string) (uint64, error) {
		if s == "" {
			return 0, nil
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n > limit {
			return 0, fmt.Errorf("msi: version %q: %s %s is more than MSI allows (%d)", v, what, s, limit)
		}
		return n, nil
	}
	major, err := field(m[1], 255, "major")
	if err != nil {
		return "", err
	}
	minor, err := field(m[2], 255, "minor")
	if err != nil {
		return "", err
	}
	patch, err := field(m[3], 65535, "patch")
	if err != nil {
		return "", err
	}
	out := fmt.Sprintf("%d.%d.%d", major, minor, patch)
	rest := m[4]
	if rest != "" && !strings.ContainsRune("-+~", rune(rest[0])) {
		return "", fmt.Errorf("msi: version %q: want MAJOR.MINOR[.PATCH], then nothing or a suffix after '-', '+' or '~'", v)
	}
	if d := describeTail.FindStringSubmatch(rest); d != nil {
		n, err := field(d[1]+d[2], 65535, "commit count")
		if err != nil {
			return "", err
		}
		out += fmt.Sprintf(".%d", n)
	}
	return out, nil
}

// Build writes the .msi to out. The context bounds the tools it runs.
func Build(ctx context.Context, opts Options, out string) error {
	switch opts.Arch {
	case "", "x64", "amd64":
	default:
		return fmt.Errorf("msi: architecture %q: only x64 is built", opts.Arch)
	}
	msiVersion, err := MSIVersion(opts.Version)
	if err != nil {
		return err
	}
	wixl, err := tool(opts.Wixl, "wixl")
	if err != nil {
		return err
	}
	msibuild, err := tool(opts.Msibuild, "msibuild")
	if err != nil {
		return err
	}
	epoch := opts.SourceDateEpoch
	if epoch == 0 {
		if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
			if epoch, err = strconv.ParseInt(s, 10, 64); err != nil {
				return fmt.Errorf("msi: SOURCE_DATE_EPOCH=%q is not a number of seconds", s)
			}
		}
	}
	epoch = max(epoch, minEpoch)
	stamp := time.Unix(epoch, 0).UTC()

	dir, err := os.MkdirTemp("", "ringfence-msi-*")
	if err != nil {
		return fmt.Errorf("msi: %w", err)
	}
	defer os.RemoveAll(dir)

	// The inputs, under fixed names, with one modification time: the
	// cabinet records the names and the times.
	type input struct {
		name string
		data []byte
	}
	var inputs []input
	for _, f := range []struct{ name, path string }{{"ringfenced.exe", opts.Ringfenced}, {"ringfence.exe", opts.Ringfence}} {
		if f.path == "" {
			return fmt.Errorf("msi: no path for %s (Options.Ringfenced, Options.Ringfence)", f.name)
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return fmt.Errorf("msi: %s: %w", f.name, err)
		}
		if !bytes.HasPrefix(b, []byte("MZ")) {
			return fmt.Errorf("msi: %s is not a Windows executable (build it with GOOS=windows GOARCH=amd64)", f.path)
		}
		inputs = append(inputs, input{f.name, b})
	}
	if len(opts.Config) > 0 {
		inputs = append(inputs, input{"ringfenced.toml", opts.Config})
	}
	if len(opts.TrustedRoot) > 0 {
		inputs = append(inputs, input{"root.json", opts.TrustedRoot})
	}
	data := wxsData{
		UpgradeCode:        UpgradeCode,
		Version:            opts.Version,
		MSIVersion:         msiVersion,
		ServiceName:        hostconfig.ServiceName,
		ServiceDescription: hostconfig.ServiceDescription,
		Config:             len(opts.Config) > 0,
		TrustedRoot:        len(opts.TrustedRoot) > 0,
	}
	// The codes' digest: everything the package is made of.
	digest := sha256.New()
	for _, s := range []string{wxsTemplate, fmt.Sprintf("%#v", data), strconv.FormatInt(epoch, 10)} {
		writeField(digest, []byte(s))
	}
	for _, in := range inputs {
		writeField(digest, []byte(in.name))
		writeField(digest, in.data)
		p := filepath.Join(dir, in.name)
		if err := os.WriteFile(p, in.data, 0o644); err != nil {
			return fmt.Errorf("msi: %w", err)
		}
		if err := os.Chtimes(p, stamp, stamp); err != nil {
			return fmt.Errorf("msi: %w", err)
		}
	}
	sum := digest.Sum(nil)

	var wxs bytes.Buffer
	data.ProductCode = nameUUID("product", sum)
	err = tmpl.Execute(&wxs, data)
	if err != nil {
		return fmt.Errorf("msi: template: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ringfence.wxs"), wxs.Bytes(), 0o644); err != nil {
		return fmt.Errorf("msi: %w", err)
	}

	built := filepath.Join(dir, "ringfence.msi")
	// The cabinet's dates are local times: TZ=UTC, whatever the builder's.
	env := append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(epoch, 10), "TZ=UTC", "LC_ALL=C")
	if err := run(ctx, dir, env, true, wixl, "-a", "x64", "-o", built, "ringfence.wxs"); err != nil {
		return err
	}
	// What wixl 0.101 cannot write (see the package comment). Component
	// attributes: 256 64-bit, 16 Permanent, 128 NeverOverwrite. Upgrade
	// attributes: 256 minimum and 512 maximum inclusive (wixl drops
	// IncludeMaximum, and the Upgrade table's key cannot be updated: the
	// row is replaced). Registry "#%": a REG_EXPAND_SZ.
	queries := []string{
		"UPDATE `Component` SET `Attributes` = 272 WHERE `Component` = 'Root'",
		"UPDATE `Registry` SET `Value` = '#%%SystemRoot%\\System32\\EventCreate.exe' WHERE `Registry` = 'EventLogMessageFile'",
		"DELETE FROM `Upgrade` WHERE `ActionProperty` = 'RINGFENCE_OLDER_FOUND'",
		"INSERT INTO `Upgrade` (`UpgradeCode`, `VersionMin`, `VersionMax`, `Attributes`, `ActionProperty`) " +
			"VALUES ('" + UpgradeCode + "', '0.0.0', '" + msiVersion + "', 768, 'RINGFENCE_OLDER_FOUND')",
	}
	if len(opts.Config) > 0 {
		queries = append(queries, "UPDATE `Component` SET `Attributes` = 400 WHERE `Component` = 'Config'")
	}
	if len(opts.TrustedRoot) > 0 {
		queries = append(queries, "UPDATE `Component` SET `Attributes` = 400 WHERE `Component` = 'TrustedRoot'")
	}
	for _, q := range queries {
		if err := run(ctx, dir, env, false, msibuild, built, "-q", q); err != nil {
			return err
		}
	}

	msi, err := os.ReadFile(built)
	if err != nil {
		return fmt.Errorf("msi: %w", err)
	}
	if err := patchSummary(msi, nameUUID("package", sum), stamp); err != nil {
		return fmt.Errorf("msi: making %s reproducible: %w", built, err)
	}
	// The one durable-write helper: temp file, sync, rename, directory sync.
	if err := atomicfile.WriteFile(out, msi, 0o644); err != nil {
		return fmt.Errorf("msi: %w", err)
	}
	return nil
}

func tool(path, name string) (string, error) {
	if path == "" {
		path = name
	}
	p, err := exec.LookPath(path)
	if err != nil {
		return "", fmt.Errorf("msi: %s not found: %w", path, ErrToolMissing)
	}
	return p, nil
}

// run runs a tool in dir. wixl warns, and carries on, about attributes it
// does not know: the template must not use any, so strict treats a warning
// as an error.
func run(ctx context.Context, dir string, env []string, strict bool, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	err := cmd.Run()
	msg := strings.TrimSpace(stderr.String())
	if err != nil {
		return fmt.Errorf("msi: %s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, msg)
	}
	if strict && strings.Contains(msg, "WARNING") {
		return fmt.Errorf("msi: %s warned (the template uses something it does not support): %s", filepath.Base(name), msg)
	}
	return nil
}

func writeField(w io.Writer, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	w.Write(n[:])
	w.Write(b)
}

// nameUUID is a name-based GUID (the layout of RFC 9562's version 5, with
// SHA-256) for one of the package's codes, from the inputs' digest:
// "{XXXXXXXX-XXXX-5XXX-YXXX-XXXXXXXXXXXX}", upper case as MSI writes them.
func nameUUID(kind string, digest []byte) string {
	h := sha256.New()
	h.Write([]byte(UpgradeCode))
	writeField(h, []byte(kind))
	h.Write(digest)
	u := h.Sum(nil)[:16]
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return strings.ToUpper(fmt.Sprintf("{%x-%x-%x-%x-%x}", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]))
}

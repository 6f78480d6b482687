package main

import (
	"bytes"
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers "deb"
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers "rpm"

	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/atomicfile"
)

// Where the packages put things on a Linux host. hostconfig owns the
// daemon's defaults (TestPathsAreHostconfigs); they are spelled out here
// because dist may be compiled for another GOOS than the one it packages.
const (
	binDir         = "/usr/bin"
	unitDir        = "/usr/lib/systemd/system"
	hostRoot       = "/var/lib/ringfence"             // hostconfig.DefaultRoot
	hostConfig     = "/etc/ringfence/ringfenced.toml" // hostconfig.DefaultPath
	hostConfDir    = "/etc/ringfence"
	hostUnit       = hostconfig.ServiceName + ".service"
	serverState    = "/var/lib/ringfence-server"
	serverConfDir  = "/etc/ringfence-server"
	serverUnit     = "ringfence-server.service"
	rpmBuildHost   = "ringfence-dist" // not the build machine's name: the packages must not depend on it
	packageRelease = "1"
)

//go:embed scripts files
var assets embed.FS

// installPaths fills the @NAME@ slots of the scripts and static files: where
// things are on an installed host. Tests run the scripts with other values.
var installPaths = map[string]string{
	"ROOT":       hostRoot,
	"CONFIG":     hostConfig,
	"CONFDIR":    hostConfDir,
	"UNIT":       hostUnit,
	"BIN":        binDir + "/ringfenced",
	"SSTATE":     serverState,
	"SCONFDIR":   serverConfDir,
	"SUNIT":      serverUnit,
	"RUNSYSTEMD": "/run/systemd/system", // there while systemd runs the host (sd_booted)
	"WANTS":      "/etc/systemd/system/multi-user.target.wants",
}

var slot = regexp.MustCompile(`@[A-Z]+@`)

// pkgSpec is one package, for one arch.
type pkgSpec struct {
	name, summary, description string
	arch                       string
	contents                   []content
	// scripts, by nfpm's names: "postinst", "prerm", "postrm" (deb) and
	// "rpm-post", "rpm-preun", "rpm-postun" (rpm); the asset name's prefix
	// is the package name.
	scripts []string
}

// content is one file or directory in a package.
type content struct {
	dst  string
	src  string // a staged file; "" for a directory
	mode os.FileMode
	typ  string // nfpm's: files.TypeFile, TypeDir, TypeConfigNoReplace
}

// linuxPackages are the packages of one arch, their binaries in bin.
func (b *builder) linuxPackages(arch, bin string) []pkgSpec {
	return []pkgSpec{
		{
			name:    "ringfenced",
			arch:    arch,
			summary: "Ringfence: safe content updates for a kernel agent (daemon and recovery CLI)",
			description: "ringfenced installs signed content updates for a kernel-level agent: it\n" +
				"validates and preflights each update against the installed interpreter,\n" +
				"stages it into A/B slots behind a boot record that falls back to\n" +
				"last-known-good by itself, supervises the agent and reports to the\n" +
				"vendor's rollout server. ringfence is its offline recovery command.\n" +
				"This build trusts the vendor's TUF root and server (ringfenced version).",
			contents: []content{
				{dst: binDir + "/ringfenced", src: filepath.Join(bin, "ringfenced"), mode: 0o755},
				{dst: binDir + "/ringfence", src: filepath.Join(bin, "ringfence"), mode: 0o755},
				{dst: unitDir + "/" + hostUnit, src: b.staged("ringfenced.service"), mode: 0o644},
				{dst: hostConfDir, mode: 0o755, typ: files.TypeDir},
				{dst: hostConfig, src: b.staged("ringfenced.toml"), mode: 0o644, typ: files.TypeConfigNoReplace},
				{dst: hostRoot, mode: 0o700, typ: files.TypeDir},
				{dst: "/usr/share/doc/ringfenced", mode: 0o755, typ: files.TypeDir},
				{dst: "/usr/share/doc/ringfenced/ringfenced.md", src: filepath.Join(b.moduleDir, "docs", "ringfenced.md"), mode: 0o644},
				{dst: "/usr/share/doc/ringfenced/recovery.md", src: filepath.Join(b.moduleDir, "docs", "recovery.md"), mode: 0o644},
			},
			scripts: []string{"postinst", "prerm", "postrm", "rpm-post", "rpm-preun", "rpm-postun"},
		},
		{
			name:    "ringfence-server",
			arch:    arch,
			summary: "Ringfence rollout server: TUF repository, telemetry, rollouts and their gate",
			description: "ringfence-server signs and serves the TUF repository Ringfence hosts\n" +
				"update from, takes their signed telemetry, admits hosts into the fleet,\n" +
				"moves each rollout ring by ring and halts and rolls back by itself.\n" +
				"The ringfence-server unit is installed but not enabled: it needs a\n" +
				"repository and its keys first (ringfence-server repo init).",
			contents: []content{
				{dst: binDir + "/ringfence-server", src: filepath.Join(bin, "ringfence-server"), mode: 0o755},
				{dst: unitDir + "/" + serverUnit, src: b.staged("ringfence-server.service"), mode: 0o644},
				{dst: serverConfDir, mode: 0o755, typ: files.TypeDir},
				{dst: serverConfDir + "/serve.env", src: b.staged("serve.env"), mode: 0o644, typ: files.TypeConfigNoReplace},
				{dst: serverState, mode: 0o700, typ: files.TypeDir},
				{dst: "/usr/share/doc/ringfence-server", mode: 0o755, typ: files.TypeDir},
				{dst: "/usr/share/doc/ringfence-server/server.md", src: filepath.Join(b.moduleDir, "docs", "server.md"), mode: 0o644},
			},
			scripts: []string{"postinst", "prerm", "postrm", "rpm-post", "rpm-preun", "rpm-postun"},
		},
	}
}

// staged is the path of a rendered file, written once per build by
// renderFiles.
func (b *builder) staged(name string) string { return filepath.Join(b.stage, "files", name) }

// renderFiles writes the configuration, the units, serve.env and the
// maintainer scripts into the staging directory.
func (b *builder) renderFiles() error {
	dir := filepath.Join(b.stage, "files")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	unit, err := hostconfig.RenderSystemdUnit(hostRoot, binDir+"/ringfenced", []string{"run", "--config", hostConfig})
	if err != nil {
		return err
	}
	conf, err := b.hostConfigFile()
	if err != nil {
		return err
	}
	out := map[string][]byte{"ringfenced.service": []byte(unit), "ringfenced.toml": conf}
	for _, name := range []string{"ringfence-server.service", "serve.env"} {
		out[name], err = b.asset("files/" + name)
		if err != nil {
			return err
		}
	}
	ents, err := assets.ReadDir("scripts")
	if err != nil {
		return err
	}
	for _, e := range ents {
		if out["script-"+e.Name()], err = b.asset("scripts/" + e.Name()); err != nil {
			return err
		}
	}
	for name, data := range out {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// asset is an embedded file with its @NAME@ slots filled from installPaths.
func (b *builder) asset(name string) ([]byte, error) { return renderAsset(name, installPaths) }

// renderAsset is the embedded file name with its @NAME@ slots filled from
// vals; a slot vals has no value for is an error.
func renderAsset(name string, vals map[string]string) ([]byte, error) {
	raw, err := assets.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var missing string
	out := slot.ReplaceAllStringFunc(string(raw), func(m string) string {
		v, ok := vals[strings.Trim(m, "@")]
		if !ok && missing == "" {
			missing = m
		}
		return v
	})
	if missing != "" {
		return nil, fmt.Errorf("%s: %s has no value (add it to installPaths)", name, missing)
	}
	return []byte(out), nil
}

// hostConfigFile is /etc/ringfence/ringfenced.toml: it works as shipped on
// this build (the vendor's values fill repository, trusted_root,
// telemetry.endpoint and agent.capabilities). It holds nothing that changes
// from one build to the next but the channels: a conffile that changed makes
// dpkg ask the admin who edited it, at every upgrade.
func (b *builder) hostConfigFile() ([]byte, error) {
	raw, err := assets.ReadFile("files/ringfenced.toml.tmpl")
	if err != nil {
		return nil, err
	}
	t, err := template.New("ringfenced.toml").Option("missingkey=error").Parse(string(raw))
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = t.Execute(&buf, map[string]string{
		"Root":     hostRoot,
		"ConfDir":  hostConfDir,
		"Channels": joinChannels(b.vendor.Channels),
	})
	return buf.Bytes(), err
}

// writePackage writes p in format ("deb" or "rpm") into the output
// directory and returns the file's name.
func (b *builder) writePackage(p pkgSpec, format string) (string, error) {
	packager, err := nfpm.Get(format)
	if err != nil {
		return "", err
	}
	name := packager.ConventionalFileName(b.info(p, format))
	var buf bytes.Buffer
	if err := packager.Package(b.info(p, format), &buf); err != nil {
		return "", err
	}
	if err := atomicfile.WriteFile(filepath.Join(b.o.Out, name), buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	return name, nil
}

// info is p as nfpm takes it, made afresh for each use (nfpm's packagers
// change the Info they are given): every file with a fixed mode, owner and
// mtime, in sorted order, and nothing taken from the build machine.
func (b *builder) info(p pkgSpec, format string) *nfpm.Info {
	var cs files.Contents
	for _, c := range p.contents {
		typ := c.typ
		if typ == "" {
			typ = files.TypeFile
		}
		cs = append(cs, &files.Content{
			Source:      c.src,
			Destination: c.dst,
			Type:        typ,
			FileInfo:    &files.ContentFileInfo{Owner: "root", Group: "root", Mode: c.mode, MTime: b.mtime},
		})
	}
	script := func(kind string) string {
		for _, s := range p.scripts {
			if s == kind {
				return b.staged("script-" + p.name + "." + kind)
			}
		}
		return ""
	}
	info := &nfpm.Info{
		Name:            p.name,
		Arch:            p.arch,
		Platform:        "linux",
		Version:         b.o.Version,
		VersionSchema:   "none",
		Release:         packageRelease,
		Section:         "admin",
		Priority:        "optional",
		Maintainer:      b.o.Maintainer,
		Description:     p.description,
		Vendor:          "Ringfence",
		MTime:           b.mtime,
		DisableGlobbing: true,
		Overridables: nfpm.Overridables{
			Contents: cs,
			Umask:    0o022,
			RPM:      nfpm.RPM{BuildHost: rpmBuildHost, Summary: p.summary, Group: "System Environment/Daemons"},
		},
	}
	switch format {
	case "deb":
		// A deb's description starts with its one-line synopsis; an rpm
		// has Summary for that.
		info.Description = p.summary + "\n" + p.description
		info.Scripts = nfpm.Scripts{PostInstall: script("postinst"), PreRemove: script("prerm"), PostRemove: script("postrm")}
	case "rpm":
		info.Scripts = nfpm.Scripts{PostInstall: script("rpm-post"), PreRemove: script("rpm-preun"), PostRemove: script("rpm-postun")}
	}
	return nfpm.WithDefaults(info)
}

package vmtest

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// Modules returns the paths of the named kernel modules and of everything
// they depend on, under modDir (lib/modules/VERSION of an unpacked
// linux-image package), each after its dependencies: the order to load them
// in. A package unpacked without depmod has no modules.dep, so dependencies
// are read from each module's own .modinfo section ("depends=a,b").
// Names match with '-' and '_' alike, as modprobe matches them.
func Modules(modDir string, names ...string) ([]string, error) {
	index := map[string]string{}
	err := filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		base := d.Name()
		if strings.HasSuffix(base, ".ko.xz") || strings.HasSuffix(base, ".ko.zst") || strings.HasSuffix(base, ".ko.gz") {
			return fmt.Errorf("vmtest: %s is compressed; the guest loads plain .ko files (unpack a kernel package with uncompressed modules)", p)
		}
		if strings.HasSuffix(base, ".ko") {
			index[modName(strings.TrimSuffix(base, ".ko"))] = p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, from string) error
	visit = func(name, from string) error {
		name = modName(name)
		switch state[name] {
		case 1:
			return fmt.Errorf("vmtest: module dependency cycle at %s", name)
		case 2:
			return nil
		}
		p, ok := index[name]
		if !ok {
			return fmt.Errorf("vmtest: module %s (needed by %s) not found under %s; is it built in?", name, from, modDir)
		}
		state[name] = 1
		deps, err := moduleDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, p)
		return nil
	}
	for _, n := range names {
		if err := visit(n, "the guest"); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func modName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// moduleDepends reads "depends=" from the module's .modinfo section.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("vmtest: %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("vmtest: %s has no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("vmtest: %s: .modinfo: %w", path, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

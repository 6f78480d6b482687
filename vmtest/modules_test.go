package vmtest

import (
	"path/filepath"
	"testing"
)

func TestModulesOrder(t *testing.T) {
	dir := kernelDir(t)
	mods, err := filepath.Glob(filepath.Join(dir, "lib", "modules", "*"))
	if err != nil || len(mods) != 1 {
		t.Fatalf("want one lib/modules/VERSION under %s, got %v (%v)", dir, mods, err)
	}
	order, err := Modules(mods[0], guestModules...)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, p := range order {
		pos[modName(trimKo(filepath.Base(p)))] = i
	}
	for _, p := range order {
		deps, err := moduleDepends(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range deps {
			if pos[modName(d)] >= pos[modName(trimKo(filepath.Base(p)))] {
				t.Errorf("%s is loaded before its dependency %s", p, d)
			}
		}
	}
	for _, n := range guestModules {
		if _, ok := pos[modName(n)]; !ok {
			t.Errorf("%s is not in the load order %v", n, order)
		}
	}
	t.Logf("load order: %v", order)
}

// Package pkgtest installs the packages `make dist` builds into real
// systems and checks what an endpoint admin would: the .deb into a Debian
// root booted with systemd as PID 1 (systemd-nspawn), the service it
// starts, the content it fetches from a real rollout server, a killed
// daemon restarted by systemd, and what remove and purge leave behind.
//
// It has no code outside its tests. `make test-packages` makes the root
// (pkgtest/rootfs.sh: debootstrap, once) and runs them; elsewhere they
// skip, naming what is missing.
package pkgtest

// Package vmtest proves the boot guard under real kernel panics: its test
// boots a Linux guest in QEMU (software emulation) whose init (vmtest/guest)
// is the loader, on a state disk holding a Ringfence root, and reads the
// disk back after every boot. The package's code builds the guest's pieces:
// an initramfs (cpio "newc") and the list of kernel modules to load, in
// dependency order, from an unpacked Debian linux-image package.
//
// The test runs with RINGFENCE_VM_KERNEL set to such a package's unpacked
// tree (vmtest/kernel.sh makes one); `make test-vm` does both.
package vmtest

// Command guest is the init of the VM test's Linux guest (vmtest): a static
// program that the kernel runs as PID 1 from the initramfs. It loads the
// virtio and ext4 modules the host listed, mounts the state disk, and runs
// itself again as the loader (package loader, the same code a host runs).
// When the loader dies, the way a kernel agent crashing on content would,
// init panics the kernel through /proc/sysrq-trigger; when it finishes, init
// syncs, unmounts and powers off. It prints "rfvm: " lines on the console,
// ending with one "rfvm-result " JSON line the host test reads.
//
// The kernel command line takes rfvm.failpoint=NAME (set as
// RINGFENCE_FAILPOINT for the loader: die at that crash point) and
// rfvm.seed=N (the seed of the first events).
package main

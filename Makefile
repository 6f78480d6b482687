# Ringfence. `make help` lists the targets.

GO        ?= go
FUZZTIME  ?= 5m
SMOKETIME ?= 3s
# Minimization of each new input is bounded: by a count in the smoke run (the
# same work on any machine), by time in long runs (fuzz/run.sh says why).
SMOKEMINIMIZE ?= 100x
FUZZMINIMIZE  ?= 10s
BENCHTIME ?= 1s
DEMOFLAGS ?=
BIN       := bin

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build the binaries into bin/
	$(GO) build -o $(BIN)/ ./cmd/...

.PHONY: demo
demo: build ## a real fleet on loopback: ringfence-server and 50 ringfenced replay July 2024 (DEMOFLAGS='--hosts 20 --keep ...'; docs/lab.md)
	$(BIN)/ringfence-lab $(DEMOFLAGS)

VMKERNEL  ?= $(BIN)/vmkernel
SKIPPED   := $(BIN)/skipped

.PHONY: sim
sim: build ## the fleet simulator: 10M hosts, 3 days, every scenario under every policy, 200 seeds at 1M, and the goals met or missed (SIMFLAGS to change; about 20 minutes on 2 cores)
	$(BIN)/ringfence-sim --goals --reps 200 --reps-hosts 1000000 $(SIMFLAGS)

.PHONY: test
test: skipped-reset check unit fuzz-smoke test-browser-if-possible test-tufjs-if-possible test-windows-if-possible test-vm-if-possible test-dist-if-possible test-packages-if-possible test-postgres-if-possible test-powercut-if-possible ## everything CI runs: check, unit tests with -race, fuzz smoke, the dashboard in Chromium, tuf-js reading our repository, Windows tests under Wine and the VM test where they can run, the packages built twice and checked, the .deb installed under systemd and the .msi under Wine, the PostgreSQL store against a real PostgreSQL, the power-cut harness
	@command -v prometheus >/dev/null || echo "SKIPPED the SLO checks against a real Prometheus (server.TestSLOPrometheus: no prometheus on PATH); 'make deps' installs prometheus" >> $(SKIPPED)
	@command -v $${CC:-cc} >/dev/null || echo "SKIPPED the C boot-record loader against the vectors and the C interpreter against the Go one (no C compiler); 'make deps' installs gcc" >> $(SKIPPED)
	@[ "$$(id -u)" = 0 ] || echo "SKIPPED the tests that need root: a real ENOSPC on a tmpfs (server.TestENOSPC, TestSigningRetried) and the SysV service install; run make test as root (CI does)" >> $(SKIPPED)
	@if [ -s $(SKIPPED) ]; then sed 's/^/make test: /' $(SKIPPED); fi
	@rm -f $(SKIPPED)
	@echo "make test: all suites passed"

.PHONY: test-vm
test-vm: ## boot the crash-loop scenarios in a QEMU guest, then with the kernel module as the loader (needs qemu-system-x86, e2fsprogs, gcc-12; fetches a Debian kernel into VMKERNEL and its headers)
	@mkdir -p $(BIN)
	./vmtest/kernel.sh $(VMKERNEL)
	@rc=0; ./kmod/build.sh $(VMKERNEL) $(BIN)/kmod || rc=$$?; \
	if [ $$rc -eq 3 ]; then rm -f $(BIN)/kmod/rfguard.ko; \
	  echo "SKIPPED the kernel-module VM scenarios (kmod/build.sh could not get the kernel's headers or gcc-12; see above)" >> $(SKIPPED); \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi
	RINGFENCE_VM_KERNEL=$(abspath $(VMKERNEL)) RINGFENCE_VM_MODULE=$$([ -f $(BIN)/kmod/rfguard.ko ] && echo $(abspath $(BIN)/kmod/rfguard.ko)) \
	  $(GO) test -count=1 -v -timeout 15m -run 'TestVM|TestModules' ./vmtest

.PHONY: test-powercut
test-powercut: ## power cuts at every point of every durable operation, on a FUSE file system that drops what was not synced (needs root and /dev/fuse)
	RINGFENCE_POWERCUT=1 $(GO) test -count=1 -v -timeout 15m -run 'TestPowerCut' ./powercut 2>&1 | tee $(BIN)/powercut.out | grep -E '^(---|FAIL|ok|panic)|powercut: |_test.go:[0-9]+: '; \
	grep -q '^ok' $(BIN)/powercut.out && ! grep -q -- '--- SKIP' $(BIN)/powercut.out

# test-powercut where FUSE can be mounted; elsewhere a SKIPPED line that says why.
.PHONY: test-powercut-if-possible
test-powercut-if-possible:
	@mkdir -p $(BIN); if [ ! -c /dev/fuse ]; then \
	  echo "SKIPPED the power-cut harness (no /dev/fuse: load the fuse module, or run where FUSE is available)" >> $(SKIPPED); exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "SKIPPED the power-cut harness (it mounts FUSE file systems directly: run make test as root)" >> $(SKIPPED); exit 0; fi; \
	$(MAKE) --no-print-directory test-powercut

.PHONY: test-postgres
test-postgres: ## the PostgreSQL store, the leader lease, the inbox and the shared repository against a real, throwaway PostgreSQL server (internal/pgtest), serve --db end to end, three replicas behind haproxy (kill -9, SIGSTOP, a database restart) and the lab on replicas; needs postgresql (and haproxy for the replicas)
	RINGFENCE_REQUIRE_POSTGRES=1 $(GO) test -count=1 ./internal/pgtest ./fleetpg
	RINGFENCE_REQUIRE_POSTGRES=1 $(GO) test -count=1 -run 'Postgres' ./cmd/ringfence-server ./cmd/ringfence-lab

# test-postgres where PostgreSQL is; elsewhere a SKIPPED line that says why.
.PHONY: test-postgres-if-possible
test-postgres-if-possible:
	@mkdir -p $(BIN); if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then \
	  echo "SKIPPED the PostgreSQL store tests (no PostgreSQL: initdb not found); 'make deps' installs postgresql" >> $(SKIPPED); exit 0; fi; \
	command -v haproxy >/dev/null || \
	  echo "SKIPPED the replicas behind a load balancer (TestReplicasPostgres*, TestLabReplicasPostgres: no haproxy); 'make deps' installs haproxy" >> $(SKIPPED); \
	$(MAKE) --no-print-directory test-postgres

.PHONY: test-browser
test-browser: ## load the dashboard in headless Chromium against a fixture and a real server with a halted rollout (needs chromium)
	RINGFENCE_BROWSER=1 RINGFENCE_REQUIRE_BROWSER=1 $(GO) test -count=1 -run 'TestBrowser' ./dashboard ./server

# test-browser where Chromium is; elsewhere a SKIPPED line that says why.
.PHONY: test-browser-if-possible
test-browser-if-possible:
	@mkdir -p $(BIN); if [ -z "$$RINGFENCE_CHROMIUM" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && ! command -v google-chrome >/dev/null; then \
	  echo "SKIPPED the dashboard in a headless browser (no chromium); 'make deps' installs chromium" >> $(SKIPPED); exit 0; fi; \
	$(MAKE) --no-print-directory test-browser

.PHONY: test-tufjs
test-tufjs: ## tuf-js (the npm TUF client) reads a tufrepo repository over HTTP, root rotation and ECDSA keys included (needs node; 'make deps' installs tuf-js into bin/tufjs)
	RINGFENCE_TUFJS=$(abspath $(BIN)/tufjs) RINGFENCE_REQUIRE_TUFJS=1 $(GO) test -count=1 -run TestTufJSReadsRepository ./tufrepo

# test-tufjs where node and tuf-js are; elsewhere a SKIPPED line that says why.
.PHONY: test-tufjs-if-possible
test-tufjs-if-possible:
	@mkdir -p $(BIN); if ! command -v node >/dev/null || [ ! -d $(BIN)/tufjs/node_modules/tuf-js ]; then \
	  echo "SKIPPED the tuf-js interop test (no node or tuf-js); 'make deps' installs tuf-js with npm" >> $(SKIPPED); exit 0; fi; \
	$(MAKE) --no-print-directory test-tufjs

.PHONY: test-windows
test-windows: ## run the Windows test binaries under Wine (needs wine, gcc-mingw-w64-x86-64)
	./wine/run.sh

# test-windows where Wine is; elsewhere a SKIPPED line that says why.
.PHONY: test-windows-if-possible
test-windows-if-possible:
	@mkdir -p $(BIN); rc=0; ./wine/run.sh > $(BIN)/wine.out 2>&1 || rc=$$?; cat $(BIN)/wine.out; \
	if [ $$rc -eq 3 ]; then grep SKIPPED $(BIN)/wine.out >> $(SKIPPED); exit 0; fi; exit $$rc

# The release packages (dist/; docs/packaging.md). VENDOR_ROOT (the fleet's
# trusted root.json) and SERVER_URL (the rollout server as hosts reach it)
# are required; the rest have defaults: VENDOR_CAPS the built-in sensor's
# manifest, CHANNELS the manifest's or 291, VERSION from git describe,
# SOURCE_DATE_EPOCH the last commit's time.
VENDOR_ROOT       ?=
SERVER_URL        ?=
VENDOR_CAPS       ?=
CHANNELS          ?=
VERSION           ?=
SOURCE_DATE_EPOCH ?=
DISTOUT           ?= dist/out
DISTARCH          ?= amd64,arm64

.PHONY: dist
dist: ## .deb and .rpm of ringfenced (+ the ringfence CLI) and ringfence-server, linux amd64/arm64, into DISTOUT with SHA256SUMS; reproducible (VENDOR_ROOT=root.json SERVER_URL=https://... required)
	$(GO) run ./dist --out "$(DISTOUT)" --arch "$(DISTARCH)" --vendor-root "$(VENDOR_ROOT)" --server-url "$(SERVER_URL)" \
	  --vendor-caps "$(VENDOR_CAPS)" --channels "$(CHANNELS)" --version "$(VERSION)" --source-date-epoch "$(SOURCE_DATE_EPOCH)"

.PHONY: test-dist
test-dist: ## build the amd64 packages twice and check them: identical bytes, contents, scripts, rpm's own tools, the packaged daemon against a vendor server
	RINGFENCE_DIST=1 $(GO) test -count=1 -timeout 15m ./dist

# test-dist everywhere (it needs only Go); a SKIPPED line for the checks
# whose tools or rights are missing here.
.PHONY: test-dist-if-possible
test-dist-if-possible:
	@mkdir -p $(BIN); command -v rpm >/dev/null || echo "SKIPPED the packages' rpm checks (no rpm: rpm -qpl, --scripts, -K); apt-get install rpm" >> $(SKIPPED); \
	[ "$$(id -u)" = 0 ] || echo "SKIPPED the maintainer scripts run against a stub systemctl (dist.TestDebScripts*, they chown to root); run make test as root" >> $(SKIPPED); \
	command -v wixl >/dev/null && command -v msiinfo >/dev/null || echo "SKIPPED the Windows .msi (no wixl or msiinfo); 'make deps' installs wixl and msitools" >> $(SKIPPED); \
	$(MAKE) --no-print-directory test-dist; \
	if command -v wine >/dev/null && command -v wixl >/dev/null; then $(MAKE) --no-print-directory test-msi-wine; \
	else echo "SKIPPED installing the .msi under Wine (no wine or wixl); 'make deps' installs them" >> $(SKIPPED); fi

.PHONY: test-msi-wine
test-msi-wine: ## install, upgrade and uninstall the .msi with msiexec under Wine and find the service registered (needs wine, wixl, msitools)
	RINGFENCE_MSI_WINE=1 $(GO) test -count=1 -timeout 10m -run TestWineInstall ./dist/msi

NSPAWNROOT ?= $(BIN)/nspawn-root

.PHONY: test-packages
test-packages: ## install the .deb into Debian with systemd as PID 1 (systemd-nspawn on a debootstrap root, made once into NSPAWNROOT): the unit, content from a real server, a restart after a kill, remove and purge (root; needs debootstrap, systemd-container)
	./pkgtest/rootfs.sh $(NSPAWNROOT)
	RINGFENCE_NSPAWN_ROOT=$(abspath $(NSPAWNROOT)) RINGFENCE_REQUIRE_NSPAWN=1 $(GO) test -count=1 -v -timeout 15m -run TestDebInstall ./pkgtest

# test-packages where it can run; elsewhere a SKIPPED line that says why.
.PHONY: test-packages-if-possible
test-packages-if-possible:
	@mkdir -p $(BIN); rc=0; ./pkgtest/rootfs.sh $(NSPAWNROOT) || rc=$$?; \
	if [ $$rc -eq 3 ]; then echo "SKIPPED the .deb installed under systemd in systemd-nspawn (see the line above); 'make deps' installs debootstrap and systemd-container, and it needs root" >> $(SKIPPED); exit 0; fi; \
	[ $$rc -eq 0 ] || exit $$rc; \
	$(MAKE) --no-print-directory test-packages

.PHONY: skipped-reset
skipped-reset:
	@rm -f $(SKIPPED)

# test-vm where it can run; elsewhere a SKIPPED line that says why.
.PHONY: test-vm-if-possible
test-vm-if-possible:
	@mkdir -p $(BIN); missing=""; \
	for p in qemu-system-x86_64 mkfs.ext4 debugfs; do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "SKIPPED the VM crash-loop test (missing:$$missing); 'make deps' installs qemu-system-x86 and e2fsprogs" >> $(SKIPPED); exit 0; fi; \
	rc=0; ./vmtest/kernel.sh $(VMKERNEL) || rc=$$?; \
	if [ $$rc -eq 3 ]; then echo "SKIPPED the VM crash-loop test (no Debian kernel package could be fetched; see above)" >> $(SKIPPED); exit 0; fi; \
	[ $$rc -eq 0 ] || exit $$rc; \
	$(MAKE) --no-print-directory test-vm

.PHONY: unit
unit: ## go test -race ./..., then the tests the race runtime cannot run (memory limits) without it
	$(GO) test -race -count=1 ./...
	$(GO) test -count=1 -run 'TestPreflightMemoryLimit' ./validator

.PHONY: check
check: fmt vet staticcheck cross ## gofmt, go vet, staticcheck, cross-builds

.PHONY: fmt
fmt: ## fail if gofmt would change a file (tracked or new, not ignored)
	@out=$$(gofmt -l $$( (git ls-files -co --exclude-standard '*.go' 2>/dev/null || find . -name '*.go') | while read -r f; do [ -f "$$f" ] && echo "$$f"; done)); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## go vet for linux and windows
	$(GO) vet ./...
	GOOS=windows $(GO) vet ./...

.PHONY: staticcheck
staticcheck: ## staticcheck (pinned in go.mod as a tool) for linux and windows
	@# Built for the host once: `GOOS=windows go tool staticcheck` would build a .exe.
	GOOS= GOARCH= $(GO) build -o $(BIN)/staticcheck honnef.co/go/tools/cmd/staticcheck
	$(BIN)/staticcheck ./...
	GOOS=windows $(BIN)/staticcheck ./...

.PHONY: cross
cross: ## cross-build every package and binary for linux and windows (amd64, arm64)
	GOOS=linux   GOARCH=amd64 $(GO) build ./...
	GOOS=linux   GOARCH=arm64 $(GO) build ./...
	GOOS=windows GOARCH=amd64 $(GO) build ./...
	GOOS=windows GOARCH=arm64 $(GO) build ./...

.PHONY: fuzz-smoke
fuzz-smoke: ## run every fuzz target for SMOKETIME (default 3s), minimizing each new input for at most SMOKEMINIMIZE (100x)
	FUZZTIME=$(SMOKETIME) FUZZMINIMIZETIME=$(SMOKEMINIMIZE) FUZZ_SKIPPED=$(SKIPPED) ./fuzz/run.sh

.PHONY: fuzz
fuzz: ## long fuzz runs: every target for FUZZTIME (default 5m), minimizing each new input for at most FUZZMINIMIZE (10s); TARGETS='FuzzParse ...' to pick
	FUZZTIME=$(FUZZTIME) FUZZMINIMIZETIME=$(FUZZMINIMIZE) ./fuzz/run.sh $(TARGETS)

.PHONY: test-fresh
test-fresh: ## .ci/run as a new machine would: a fresh clone of HEAD, empty Go build and fuzz caches (FRESHDIR to keep it; not part of make test)
	./.ci/fresh.sh

.PHONY: bench
bench: ## benchmarks (BENCHTIME=1s); the numbers quoted in issues come from here
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

.PHONY: bench-compare
bench-compare: ## one benchmark of HEAD's tree against BASE, in turns, in one run (BASE=commit PKG=./server BENCH=regexp METRIC=events/s)
	./bench/compare.sh $(BASE) $(PKG) $(BENCH) $(or $(METRIC),ns/op) $(or $(ROUNDS),5) $(BENCHTIME)

.PHONY: deps
deps: ## install optional system packages the extra suites use (apt-get; tolerant of missing packages), and tuf-js with npm into bin/tufjs
	./.ci/deps.sh

.PHONY: clean
clean: ## remove build output
	rm -rf $(BIN) fuzz/out

package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/ringfence/ringfence/internal/vendorbuild"
	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/validator"
)

// referenceCapabilities is the reference agent's capability manifest: the
// one a vendor build embeds (make dist VENDOR_CAPS=...), else the built-in
// sensor's. The agent loads content with it, and the daemon validates and
// preflights content against it, unless agent.capabilities names a file.
func referenceCapabilities() (*validator.Capabilities, error) {
	b := vendorbuild.Capabilities()
	if b == nil {
		return sensor.DefaultCapabilities(), nil
	}
	c, err := validator.ParseCapabilities(b)
	if err != nil {
		return nil, fmt.Errorf("the capability manifest this build embeds: %w (rebuild with a valid VENDOR_CAPS, or set agent.capabilities)", err)
	}
	return c, nil
}

// loadCapabilities is the manifest at path, or the reference agent's when
// path is empty.
func loadCapabilities(path string) (*validator.Capabilities, error) {
	if path == "" {
		return referenceCapabilities()
	}
	return validator.LoadCapabilities(path)
}

// printVersion is `ringfenced version`: the version, then what the build
// embeds, so that an admin can tell which fleet a binary belongs to.
func printVersion(w io.Writer) {
	fmt.Fprintf(w, "ringfenced %s (%s, %s-%s)\n", version, runtime.Version(), goos, runtime.GOARCH)
	if !vendorbuild.Embedded() {
		fmt.Fprintln(w, "vendor values: none embedded (not a vendor build: the configuration names repository and trusted_root)")
		return
	}
	if b := vendorbuild.Root(); b != nil {
		fmt.Fprintf(w, "trusted root:  embedded root.json, sha256 %s (used unless trusted_root is set)\n", vendorbuild.SHA256(b))
	} else {
		fmt.Fprintln(w, "trusted root:  none embedded (the configuration names trusted_root)")
	}
	if u := vendorbuild.ServerURL(); u != "" {
		fmt.Fprintf(w, "server:        %s (the repository and telemetry.endpoint unless set)\n", u)
	} else {
		fmt.Fprintln(w, "server:        none embedded (the configuration names repository)")
	}
	if b := vendorbuild.Capabilities(); b != nil {
		c, err := referenceCapabilities()
		if err != nil {
			fmt.Fprintf(w, "capabilities:  embedded manifest, sha256 %s, INVALID: %v\n", vendorbuild.SHA256(b), err)
		} else {
			fmt.Fprintf(w, "capabilities:  embedded manifest, sensor %s, sha256 %s (used unless agent.capabilities is set)\n", c.Sensor, vendorbuild.SHA256(b))
		}
	} else {
		fmt.Fprintf(w, "capabilities:  the built-in reference sensor %s\n", sensor.Version)
	}
}

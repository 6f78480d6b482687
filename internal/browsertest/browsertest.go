// Package browsertest starts a headless Chromium for tests that drive a web
// page, such as the dashboard's. Only tests import it; it is the one place
// that imports chromedp.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ringfence/ringfence/internal/syncbuf"
	"github.com/ringfence/ringfence/internal/testtmp"
)

// Timeout bounds a whole browser test: start, every action and the close.
const Timeout = 60 * time.Second

// browserNames are the programs Chromium looks for on PATH, in order.
var browserNames = []string{"chromium", "chromium-browser", "google-chrome"}

// Chromium returns the path of a Chromium binary: $RINGFENCE_CHROMIUM, else
// chromium / chromium-browser / google-chrome on PATH; "" when none.
// $RINGFENCE_CHROMIUM is returned as set, unchecked, so that a wrong value
// fails the test that uses it instead of skipping it.
func Chromium() string {
	if p := os.Getenv("RINGFENCE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range browserNames {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// New starts a headless Chromium with a fresh profile and returns a chromedp
// context for its first tab, bounded by Timeout. Without a Chromium it skips
// the test, or fails it when RINGFENCE_REQUIRE_BROWSER=1 (CI sets it so that a
// missing browser cannot pass silently). The test's cleanup closes the
// browser and, if the test failed, logs what Chromium printed.
func New(t testing.TB) context.Context {
	t.Helper()
	path := Chromium()
	if path == "" {
		msg := "no Chromium found (set RINGFENCE_CHROMIUM, or put chromium, chromium-browser or google-chrome on PATH); 'make deps' installs it"
		if os.Getenv("RINGFENCE_REQUIRE_BROWSER") == "1" {
			t.Fatal(msg + "; RINGFENCE_REQUIRE_BROWSER=1 forbids skipping")
		}
		t.Skip(msg)
	}

	// The profile lives in its own temporary directory; testtmp removes it
	// after the browser has exited (cleanups run last-registered first).
	profile := filepath.Join(testtmp.Dir(t), "profile")
	out := &syncbuf.Buffer{}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // containers and root CI runners have no user namespaces
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), // /dev/shm is 64 MB in a default container
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(profile),
		chromedp.CombinedOutput(out),
	}

	timeoutCtx, cancelTimeout := context.WithTimeout(context.Background(), Timeout)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(timeoutCtx, opts...)
	ctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelBrowser() // closes the browser and waits for it to exit
		cancelAlloc()
		cancelTimeout()
		if t.Failed() && out.Len() > 0 {
			t.Logf("chromium output:\n%s", out.String())
		}
	})

	// Start the browser now, so that a broken install fails here with
	// Chromium's own words rather than in the test's first action.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

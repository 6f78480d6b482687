package server_test

import (
	"bytes"
	"context"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/internal/browsertest"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/wire"
)

// TestBrowserHaltedRollout loads the dashboard of a real server whose
// rollout the canary rule halted (started with manual rollback, so it
// stays halted), checks that the halt and its evidence are shown, then
// rolls back with the page's button: the real server takes the action with
// the token from the URL, and the page shows the new state.
func TestBrowserHaltedRollout(t *testing.T) {
	if os.Getenv("RINGFENCE_BROWSER") != "1" {
		t.Skip("set RINGFENCE_BROWSER=1 or run make test-browser")
	}
	l := newLab(t, server.Options{CanaryTags: []string{"canary"}})
	canary := newHost(t, "canary")
	var others []*host
	for range 5 {
		others = append(others, newHost(t, ""))
	}
	l.admit(t, append([]*host{canary}, others...)...)
	for _, h := range append([]*host{canary}, others...) {
		code, ans := l.post(t, h, h.batch(1001))
		require.Equal(t, http.StatusOK, code, ans)
	}
	_, _, err := l.client().Start(context.Background(), server.StartRequest{ActionRequest: server.ActionRequest{Who: "alice", Why: "weekly content"},
		Channel: 291, Version: 1002, ManualRollback: true})
	require.NoError(t, err)
	for range 3 {
		l.clock.Advance(time.Minute)
		_, err := l.srv.Evaluate()
		require.NoError(t, err)
	}
	code, ans := l.post(t, canary, canary.batch(1001,
		wire.Event{Kind: wire.EventInstalled, Version: 1002},
		wire.Event{ID: "reverted-291-1002-load-crash", Kind: wire.EventReverted, Version: 1002, Reason: "load-crash", Critical: true}))
	require.Equal(t, http.StatusOK, code, ans)
	require.Equal(t, controller.StateHalted, l.srv.Status()[0].State)

	ctx := browsertest.New(t)
	dialogs := make(chan error, 4)
	opened := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range opened {
			if err != nil {
				return
			}
			_, err := chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true, PromptText: "canary crashed on load"})
			dialogs <- err
		}
	}()

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(l.http.URL+"/#token="+l.srv.Token()),
		chromedp.WaitVisible(chromedp.ID("halt-banner-291")),
	))
	banner, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("halt-banner-291")))
	require.NoError(t, err)
	require.Contains(t, banner, "HALTED")
	require.Contains(t, banner, "reverted: load-crash of version 1002 in the canary group (host "+canary.id.HostID()+")")
	require.Contains(t, banner, "1/1 failed", "the evidence: treated failures of treated hosts")

	first, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`[data-channel="291"] tr.decision`)))
	require.NoError(t, err)
	require.Contains(t, first, "halt")
	require.Contains(t, first, "canary group")

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	_, err = png.DecodeConfig(bytes.NewReader(shot))
	require.NoError(t, err)
	keep := filepath.Join(os.TempDir(), "dashboard-server.png")
	require.NoError(t, os.WriteFile(keep, shot, 0o644))
	t.Logf("screenshot: %s", keep)

	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`[data-channel="291"] button[data-action="rollback"]`))))
	select {
	case err := <-dialogs:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatal("no prompt() for the reason")
	}
	_, err = chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('[data-channel="291"] .state')?.textContent === 'rolled-back'`))
	require.NoError(t, err, "the page shows the rollback the server made")
	v := l.srv.Status()[0]
	require.Equal(t, controller.StateRolledBack, v.State)
	require.Equal(t, "dashboard", v.Decisions[0].Actor)
	require.Equal(t, "canary crashed on load", v.Decisions[0].Reason)
}

package dashboard_test

import (
	"bytes"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/dashboard"
	"github.com/ringfence/ringfence/internal/browsertest"
	"github.com/ringfence/ringfence/internal/testtmp"
)

// haltedRollout is GET /v1/rollouts with one rollout that the gate halted in
// its second stage. The decisions are oldest first, so the test also sees the
// page put the newest first. Its version runs on sensor 7.12 only: the
// channel's 7.11 hosts and those that did not say their sensor are outside
// the rollout (neither treated nor control).
const haltedRollout = `{"hosts": 70, "pending_hosts": 3,
  "sensors": {"7.12": 55, "unknown": 2, "7.11": 12, "7.9": 1},
  "store": {"failures": 2, "last_error": "fleetdb: commit: no space left on device", "since": "2026-12-01T10:04:30Z"},
  "rollouts": [{
  "channel": 291, "from_version": 1001, "to_version": 1002, "plan_signed": false, "sign_error": "sign the plan of channel 291: disk full",
  "state": "halted", "schedule": "standard", "stage": 1, "stage_started": "2026-12-01T10:00:00Z",
  "updated": "2026-12-01T10:05:00Z",
  "stages": [
    {"name": "canary", "percent": 0, "hosts": ["h-1"], "tags": ["canary"], "bake_seconds": 600, "min_hosts": 5, "status": "done"},
    {"name": "0.1%", "percent": 0.1, "bake_seconds": 1800, "min_hosts": 10, "status": "current"},
    {"name": "1%", "percent": 1, "bake_seconds": 3600, "min_hosts": 50, "status": "pending"},
    {"name": "10%", "percent": 10, "bake_seconds": 7200, "min_hosts": 200, "status": "pending"},
    {"name": "all", "percent": 100, "bake_seconds": 0, "min_hosts": 0, "status": "pending"}
  ],
  "versions": {"1001": 59, "1002": 5},
  "compat": {"sensors": ["7.12"], "excluded": {"7.11": "FIELD_NOT_SUPPLIED"}},
  "sensors": {"unknown": 2, "7.12": 50, "7.11": 12},
  "excludes": ["7.11", "unknown"],
  "gate": {"statistic": 3.4, "threshold": 3.0, "alpha": 0.001, "treated": 5, "control": 45, "treated_failures": 3, "control_failures": 0, "excluded": 14,
    "treated_silent": 1, "control_silent": 0, "reported_statistic": 3.4, "silence_statistic": 0.3, "health_statistic": 1.25,
    "treated_judged": 4, "treated_unhealthy": 2, "health_p0": 0.0588, "control_sampled": 33, "control_unhealthy": 1,
    "expected_failures": 0.42, "promoted": false, "promote": {"margin": 2, "beta": 0.05},
    "health_limits": {"cpu": 0.0204, "rss": 23600000, "latency_us": 50.4, "events_per_s": 153.6, "controls": 33}},
  "slo": [
    {"name": "error-rate", "query": "sum(rate(http_errors_total[5m]))", "max": 0.01, "grace": "5m0s",
     "last": {"value": 0.0023, "last_data": "2026-12-01T10:04:00Z", "at": "2026-12-01T10:04:00Z"}},
    {"name": "detections", "query": "sum(rate(detections_total[5m]))", "min": 100,
     "last": {"at": "2026-12-01T10:04:00Z", "no_data": true}}
  ],
  "history": [
    {"time": "2026-12-01T09:51:00Z", "statistic": 0.0, "threshold": 3.0, "stage": 0},
    {"time": "2026-12-01T09:54:00Z", "statistic": 0.3, "threshold": 3.0, "stage": 0},
    {"time": "2026-12-01T09:57:00Z", "statistic": -0.2, "threshold": 3.0, "stage": 0},
    {"time": "2026-12-01T10:00:00Z", "statistic": 0.1, "threshold": 3.0, "stage": 0},
    {"time": "2026-12-01T10:01:00Z", "statistic": 0.9, "threshold": 3.0, "stage": 1},
    {"time": "2026-12-01T10:02:00Z", "statistic": 1.8, "threshold": 3.0, "stage": 1},
    {"time": "2026-12-01T10:03:00Z", "statistic": 2.6, "threshold": 3.0, "stage": 1},
    {"time": "2026-12-01T10:04:00Z", "statistic": 3.4, "threshold": 3.0, "stage": 1}
  ],
  "decisions": [
    {"seq": 1, "time": "2026-12-01T09:50:00Z", "kind": "start", "stage": 0, "actor": "alice", "reason": "weekly content update"},
    {"seq": 2, "time": "2026-12-01T10:00:00Z", "kind": "advance", "stage": 1, "actor": "gate", "reason": "canary baked 10m without a failure",
     "evidence": {"statistic": 0.1, "threshold": 3.0, "treated": 5, "control": 45, "treated_failures": 0, "control_failures": 0}},
    {"seq": 3, "time": "2026-12-01T10:04:00Z", "kind": "halt", "stage": 1, "actor": "gate",
     "reason": "crash-on-load revert in the canary group (host h-1)",
     "evidence": {"statistic": 3.4, "threshold": 3.0, "treated": 5, "control": 45, "treated_failures": 3, "control_failures": 0,
       "treated_judged": 4, "treated_unhealthy": 2, "health_p0": 0.0588}}
  ]
}]}`

const haltReason = "crash-on-load revert in the canary group (host h-1)"

// actionRefusal is what the fixture server answers to every action, so that
// the test sees the page show a server error.
const actionRefusal = "rollout of channel 291 is already halted; resume it first"

type post struct {
	path, auth, contentType string
	body                    []byte
}

// fixture serves the dashboard and a fake /v1 API on loopback.
type fixture struct {
	srv      *httptest.Server
	rollouts atomic.Pointer[string]
	posts    chan post
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{posts: make(chan post, 8)}
	body := haltedRollout
	f.rollouts.Store(&body)
	mux := http.NewServeMux()
	mux.Handle("/", dashboard.Handler())
	mux.HandleFunc("GET /v1/rollouts", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, *f.rollouts.Load())
	})
	mux.HandleFunc("POST /v1/rollouts/{channel}/{action}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		select {
		case f.posts <- post{path: r.URL.Path, auth: r.Header.Get("Authorization"), contentType: r.Header.Get("Content-Type"), body: b}:
		default:
		}
		http.Error(w, actionRefusal, http.StatusConflict)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func TestBrowserHaltedRollout(t *testing.T) {
	if os.Getenv("RINGFENCE_BROWSER") != "1" {
		t.Skip("set RINGFENCE_BROWSER=1 or run make test-browser")
	}
	f := newFixture(t)
	ctx := browsertest.New(t)

	// Collect what the page logs; a CSP violation or a script error shows
	// here and nowhere else.
	var consoleMu sync.Mutex
	var console []string
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			// The 409 of the refused action is logged by the network layer; that one is expected.
			if m.IsException() || (m.Type == chromedp.ConsoleError && m.Source != "network") {
				consoleMu.Lock()
				console = append(console, string(m.Type)+": "+m.Text)
				consoleMu.Unlock()
			}
		}
	}()

	// The prompt() of an action blocks the page, and the click with it: this
	// goroutine answers it.
	type dialog struct {
		typ, message string
		err          error
	}
	dialogs := make(chan dialog, 4)
	opened := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range opened {
			if err != nil {
				return
			}
			_, err := chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true, PromptText: "  canary crash  "})
			dialogs <- dialog{typ: string(ev.Type), message: ev.Message, err: err}
		}
	}()

	rollout := `[data-channel="291"] `
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(f.srv.URL+"/#token=secret"),
		chromedp.WaitVisible(chromedp.ID("halt-banner-291")),
	))

	t.Run("banner", func(t *testing.T) {
		banner, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("halt-banner-291")))
		require.NoError(t, err)
		require.Contains(t, banner, "HALTED")
		require.Contains(t, banner, haltReason)
		require.Contains(t, banner, "3.40 ≥ 3.00")
		require.Contains(t, banner, "3/5 failed")
		require.Contains(t, banner, "0/45 failed")

		state, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(rollout+".state")))
		require.NoError(t, err)
		require.Equal(t, "halted", state)
	})

	t.Run("store and signing", func(t *testing.T) {
		fleet, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("fleet")))
		require.NoError(t, err)
		require.Contains(t, fleet, "70 hosts")
		require.Contains(t, fleet, "pending 3")
		require.Contains(t, fleet, "STORE FAILING")
		require.Contains(t, fleet, "no space left on device")
		unsigned, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("sign-banner-291")))
		require.NoError(t, err)
		require.Contains(t, unsigned, "PLAN NOT YET SIGNED")
		require.Contains(t, unsigned, "disk full")
	})

	t.Run("decision log newest first", func(t *testing.T) {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('[data-channel="291"] tr.decision').length`))
		require.NoError(t, err)
		require.Equal(t, 3, n)
		first, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(rollout+"tr.decision")))
		require.NoError(t, err)
		require.Contains(t, first, "halt")
		require.Contains(t, first, haltReason)
		require.Contains(t, first, "gate")
		require.Contains(t, first, "3.40 ≥ 3.00")
	})

	t.Run("sensors", func(t *testing.T) {
		// The constraint, the channel's hosts per sensor with the excluded
		// ones marked and counted, and the fleet's hosts per sensor, in
		// version order (7.9 before 7.11), unknown last.
		got, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]any](`(() => {
			const a = document.querySelector('[data-channel="291"]');
			const p = a.querySelector('.sensors-panel');
			return {
				compat: p.querySelector('.compat').textContent,
				meta: a.querySelector('.rollout-head .compat-meta').textContent,
				rows: [...p.querySelectorAll('.sensors-table tbody tr')].map((r) =>
					[r.dataset.sensor, r.dataset.excluded, r.cells[0].textContent, r.cells[1].textContent]),
				excluded: p.querySelector('.sensors-table tfoot').textContent,
				fleet: [...document.querySelectorAll('#fleet .fleet-sensor')].map((s) => s.textContent),
			};
		})()`))
		require.NoError(t, err)
		require.Equal(t, map[string]any{
			"compat": "compat sensor 7.12 only; excludes 7.11 (FIELD_NOT_SUPPLIED)",
			"meta":   "compat sensor 7.12 only",
			"rows": []any{
				[]any{"7.11", "true", "7.11excluded", "12"},
				[]any{"7.12", "false", "7.12", "50"},
				[]any{"unknown", "true", "unknownexcluded", "2"},
			},
			"excluded": "excluded from the rollout14",
			"fleet":    []any{"7.9: 1", "7.11: 12", "7.12: 55", "unknown: 2"},
		}, got)
		panel, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(rollout+".sensors-panel")))
		require.NoError(t, err)
		require.Contains(t, panel, "HOSTS PER SENSOR") // the panels' titles are upper-cased by the stylesheet
		fleet, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("fleet")))
		require.NoError(t, err)
		require.Contains(t, fleet, "sensors 7.9: 1, 7.11: 12, 7.12: 55, unknown: 2")
	})

	t.Run("tests", func(t *testing.T) {
		// The gate's three tests: the one over the threshold marked, the
		// health test's judgements and the limits the controls set, where
		// promotion stands; the SLO checks with their last values.
		got, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]any](`(() => {
			const p = document.querySelector('[data-channel="291"] .gate-panel');
			const rows = [...p.querySelectorAll('tr.test')];
			return {
				tests: rows.map((r) => r.dataset.test + (r.classList.contains('bad') ? ' (over)' : '') + ': ' + r.querySelector('td.num').textContent),
				health: p.querySelector('tr[data-test="health"]').textContent,
				failures: p.querySelector('tr[data-test="failures"]').textContent,
				limits: p.querySelector('.limits').textContent,
				promotion: p.querySelector('.promotion').textContent,
				slo: [...document.querySelectorAll('[data-channel="291"] .slo-panel tr.slo-check')].map((r) => [...r.children].map((c) => c.textContent)),
			};
		})()`))
		require.NoError(t, err)
		require.Equal(t, []any{"failures (over): 3.40", "silence: 0.30", "health: 1.25"}, got["tests"])
		require.Contains(t, got["failures"], "2 treated, 0 control hosts reported one", "failures less the silent ones")
		require.Contains(t, got["health"], "2 of 4 treated hosts judged unhealthy; a healthy one is at most 5.9% likely to be (1 of 33 controls beyond the limits)")
		require.Equal(t, "health limits: CPU 0.020 cores, memory 23.6 MB, latency p99 50 µs, at least 153.6 events/s (from 33 controls)", got["limits"])
		require.Contains(t, got["promotion"], "not yet")
		require.Contains(t, got["promotion"], "no worse than 2x (beta 0.05)")
		require.Contains(t, got["promotion"], "expected failures so far 0.4")
		require.Equal(t, []any{
			[]any{"error-rate", "sum(rate(http_errors_total[5m]))", "≤ 0.01 (grace 5m0s)", "0.0023", "within bounds"},
			[]any{"detections", "sum(rate(detections_total[5m]))", "≥ 100", "–", "no data"},
		}, got["slo"])
		banner, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("halt-banner-291")))
		require.NoError(t, err)
		require.Contains(t, banner, "2/4 unhealthy (p0 5.9%)", "the halt's evidence names the health judgements")
	})

	t.Run("stages", func(t *testing.T) {
		statuses, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
			`[...document.querySelectorAll('[data-channel="291"] .stage')].map((s) => s.dataset.status)`))
		require.NoError(t, err)
		require.Equal(t, []string{"done", "current", "pending", "pending", "pending"}, statuses)
	})

	t.Run("chart", func(t *testing.T) {
		// A horizontal threshold line, one halt point, and a statistic line
		// through all eight samples.
		got, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]any](`(() => {
			const c = document.querySelector('[data-channel="291"] svg.gate-chart');
			const th = c.querySelector('line.threshold');
			return {
				threshold: th !== null && th.getAttribute('y1') === th.getAttribute('y2'),
				halts: c.querySelectorAll('.halt-point').length,
				points: c.querySelector('polyline.stat-line').getAttribute('points').trim().split(/\s+/).length,
			};
		})()`))
		require.NoError(t, err)
		require.Equal(t, map[string]any{"threshold": true, "halts": float64(1), "points": float64(8)}, got)
	})

	t.Run("screenshot", func(t *testing.T) {
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		cfg, err := png.DecodeConfig(bytes.NewReader(shot))
		require.NoError(t, err, "screenshot is not a PNG")
		require.Greater(t, cfg.Width, 0)
		require.Greater(t, cfg.Height, 0)
		require.NoError(t, os.WriteFile(filepath.Join(testtmp.Dir(t), "dashboard.png"), shot, 0o600))
		// A copy outside the test's own directory, to look at.
		keep := filepath.Join(os.TempDir(), "dashboard.png")
		require.NoError(t, os.WriteFile(keep, shot, 0o644))
		t.Logf("screenshot: %s (%dx%d)", keep, cfg.Width, cfg.Height)
	})

	t.Run("rollback", func(t *testing.T) {
		require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(rollout+`button[data-action="rollback"]`))))
		var d dialog
		select {
		case d = <-dialogs:
		case <-ctx.Done():
			t.Fatal("no prompt() for the reason")
		}
		require.NoError(t, d.err)
		require.Equal(t, "prompt", d.typ)
		require.Contains(t, d.message, "rollback")

		var p post
		select {
		case p = <-f.posts:
		case <-ctx.Done():
			t.Fatal("the page posted no action")
		}
		require.Equal(t, "/v1/rollouts/291/rollback", p.path)
		require.Equal(t, "Bearer secret", p.auth)
		require.Equal(t, "application/json", p.contentType)
		var body map[string]any
		require.NoError(t, json.Unmarshal(p.body, &body), "body: %s", p.body)
		require.Equal(t, map[string]any{"who": "dashboard", "why": "canary crash"}, body)

		// The server refused; the page says why.
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('#action-msg-291.error') !== null`))
		require.NoError(t, err)
		msg, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("action-msg-291")))
		require.NoError(t, err)
		require.Contains(t, msg, actionRefusal)
		require.Contains(t, msg, "409")
	})

	t.Run("read-only without a token", func(t *testing.T) {
		require.NoError(t, chromedp.Do(ctx,
			chromedp.Navigate(f.srv.URL+"/"),
			chromedp.WaitVisible(chromedp.ID("halt-banner-291")),
		))
		got, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]any](`(() => {
			const b = [...document.querySelectorAll('[data-channel="291"] .actions button')];
			return {buttons: b.length, disabled: b.every((x) => x.disabled), hint: b.every((x) => x.title.includes('#token='))};
		})()`))
		require.NoError(t, err)
		require.Equal(t, map[string]any{"buttons": float64(5), "disabled": true, "hint": true}, got)
	})

	t.Run("no rollouts", func(t *testing.T) {
		empty := `{"rollouts": []}`
		f.rollouts.Store(&empty)
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('#rollouts .empty')?.textContent === 'No rollouts yet.'`))
		require.NoError(t, err)
	})

	t.Run("hostile text stays text", func(t *testing.T) {
		hostile := strings.Replace(haltedRollout, haltReason, `<img src=x onerror=\"document.title='pwned'\"><b>bold</b>`, 1)
		// Sensor versions and the publisher's reasons come from hosts and
		// signed metadata: text too, wherever they show.
		hostile = strings.ReplaceAll(hostile, `"7.11"`, `"<b>7.11</b><img src=x onerror=\"document.title='sensor'\">"`)
		hostile = strings.Replace(hostile, `"FIELD_NOT_SUPPLIED"`, `"<i>why</i>"`, 1)
		f.rollouts.Store(&hostile)
		require.NoError(t, chromedp.Do(ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("halt-banner-291"))))
		got, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]any](`(() => ({
			title: document.title,
			markup: document.querySelectorAll('#rollouts img, #rollouts b, #rollouts i, #fleet img, #fleet b').length,
			text: document.querySelector('#halt-banner-291 .banner-reason').textContent,
			sensors: [...document.querySelectorAll('[data-channel="291"] .sensors-table tbody tr')].map((r) => r.cells[0].textContent),
			compat: document.querySelector('[data-channel="291"] .compat').textContent,
			fleet: [...document.querySelectorAll('#fleet .fleet-sensor')].map((s) => s.textContent),
		}))()`))
		require.NoError(t, err)
		require.Equal(t, map[string]any{
			"title":   "ringfence rollouts",
			"markup":  float64(0),
			"text":    `<img src=x onerror="document.title='pwned'"><b>bold</b>`,
			"sensors": []any{"7.12", `<b>7.11</b><img src=x onerror="document.title='sensor'">excluded`, "unknownexcluded"},
			"compat":  `compat sensor 7.12 only; excludes <b>7.11</b><img src=x onerror="document.title='sensor'"> (<i>why</i>)`,
			"fleet":   []any{"7.9: 1", "7.12: 55", `<b>7.11</b><img src=x onerror="document.title='sensor'">: 12`, "unknown: 2"},
		}, got)
	})

	consoleMu.Lock()
	defer consoleMu.Unlock()
	require.Empty(t, console, "the page logged errors")
}

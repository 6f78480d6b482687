package dashboard_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/compat"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/dashboard"
	"github.com/ringfence/ringfence/server"
)

func TestHandler(t *testing.T) {
	h := dashboard.Handler()
	tests := []struct {
		name, method, path string
		status             int
		contentType        string
		bodyContains       string
	}{
		{"index at root", http.MethodGet, "/", http.StatusOK, "text/html; charset=utf-8", `<script src="app.js" defer></script>`},
		{"index by name", http.MethodGet, "/index.html", http.StatusOK, "text/html; charset=utf-8", `<main id="rollouts"`},
		{"script", http.MethodGet, "/app.js", http.StatusOK, "text/javascript; charset=utf-8", "/v1/rollouts"},
		{"stylesheet", http.MethodGet, "/style.css", http.StatusOK, "text/css; charset=utf-8", ".gate-chart"},
		{"icon", http.MethodGet, "/favicon.svg", http.StatusOK, "image/svg+xml", "<svg"},
		{"head", http.MethodHead, "/app.js", http.StatusOK, "text/javascript; charset=utf-8", ""},
		{"unknown file", http.MethodGet, "/nope.js", http.StatusNotFound, "", ""},
		{"embed directory name", http.MethodGet, "/assets/app.js", http.StatusNotFound, "", ""},
		{"asset as directory", http.MethodGet, "/app.js/", http.StatusNotFound, "", ""},
		{"api path", http.MethodGet, "/v1/rollouts", http.StatusNotFound, "", ""},
		{"metrics path", http.MethodGet, "/metrics", http.StatusNotFound, "", ""},
		{"favicon.ico", http.MethodGet, "/favicon.ico", http.StatusNotFound, "", ""},
		{"post", http.MethodPost, "/", http.StatusMethodNotAllowed, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			res := rec.Result()
			body, err := io.ReadAll(res.Body)
			require.NoError(t, err)
			require.Equal(t, tc.status, res.StatusCode, "body: %s", body)
			if tc.status != http.StatusOK {
				return
			}
			require.Equal(t, tc.contentType, res.Header.Get("Content-Type"))
			require.Equal(t, "no-cache", res.Header.Get("Cache-Control"))
			require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
			csp := res.Header.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'self'", "script-src 'self';", "style-src 'self';", "object-src 'none'", "frame-ancestors 'none'"} {
				require.Contains(t, csp, want)
			}
			require.NotContains(t, csp, "unsafe-")
			require.NotEmpty(t, res.Header.Get("ETag"))
			if tc.method == http.MethodHead {
				require.Empty(t, body)
			} else {
				require.Contains(t, string(body), tc.bodyContains)
			}
		})
	}
	t.Run("post not allowed", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/app.js", strings.NewReader("x")))
		require.Equal(t, http.StatusMethodNotAllowed, rec.Code)
		require.Equal(t, "GET, HEAD", rec.Header().Get("Allow"))
	})
}

// TestHandlerRevalidates: no-cache makes the browser ask again on every load;
// the ETag lets the answer be a 304 until the binary changes.
func TestHandlerRevalidates(t *testing.T) {
	h := dashboard.Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/app.js", nil))
	etag := rec.Header().Get("ETag")
	require.NotEmpty(t, etag)

	req := httptest.NewRequest(http.MethodGet, "/app.js", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusNotModified, rec.Code)
	require.Empty(t, rec.Body.String())
}

// TestAssetsKeepThePolicy checks the sources for what the
// Content-Security-Policy would block at run time (inline script, inline
// style, inline handlers) and for innerHTML, which would let API text become
// markup.
func TestAssetsKeepThePolicy(t *testing.T) {
	h := dashboard.Handler()
	get := func(path string) string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		require.Equal(t, http.StatusOK, rec.Code, path)
		return rec.Body.String()
	}
	index := get("/")
	require.NotRegexp(t, regexp.MustCompile(`<script(\s[^>]*)?>[^<]*\S[^<]*</script>`), index, "inline script")
	require.NotRegexp(t, regexp.MustCompile(`<style`), index, "inline stylesheet")
	require.NotRegexp(t, regexp.MustCompile(`\sstyle=`), index, "style attribute")
	require.NotRegexp(t, regexp.MustCompile(`\son[a-z]+=`), index, "inline event handler")
	require.NotRegexp(t, regexp.MustCompile(`(src|href)="(https?:)?//`), index, "asset from another origin")

	app := get("/app.js")
	for _, banned := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "'style'"} {
		require.Falsef(t, strings.Contains(app, banned), "app.js uses %s", banned)
	}
}

// TestFixtureIsTheAPI: the fixture the browser test draws is what the
// server sends (server.Overview, no member it lacks), and it has what the
// page must show of sensors: a constrained version, hosts per sensor on
// the channel with some excluded, the gate's count of them, and the
// fleet's hosts per sensor.
func TestFixtureIsTheAPI(t *testing.T) {
	dec := json.NewDecoder(strings.NewReader(haltedRollout))
	dec.DisallowUnknownFields()
	var o server.Overview
	require.NoError(t, dec.Decode(&o))
	require.Len(t, o.Rollouts, 1)
	v := o.Rollouts[0]
	require.Equal(t, compat.Constraint{Sensors: []string{"7.12"}, Excluded: map[string]string{"7.11": "FIELD_NOT_SUPPLIED"}}, v.Compat)
	require.Equal(t, map[string]int{"7.11": 12, "7.12": 50, "unknown": 2}, v.Sensors)
	require.Equal(t, []string{"7.11", "unknown"}, v.Excludes)
	require.EqualValues(t, 14, v.Gate.Excluded)
	require.Equal(t, map[string]int{"7.9": 1, "7.11": 12, "7.12": 55, "unknown": 2}, o.Sensors)
}

// TestScriptReadsTheSensors: the names under which the server sends the
// constraint, the hosts per sensor, the excluded versions and counts are
// the ones app.js reads (a renamed member would leave the page blank where
// the browser test, with its fixture, could not tell).
func TestScriptReadsTheSensors(t *testing.T) {
	v := server.View{Compat: compat.Constraint{Sensors: []string{"7.12"}, Excluded: map[string]string{"7.11": "preflight"}},
		Sensors: map[string]int{"7.11": 1}, Excludes: []string{"7.11"},
		Gate: server.GateView{Counts: controller.Counts{Excluded: 1}}}
	b, err := json.Marshal(server.Overview{Rollouts: []server.View{v}, Sensors: map[string]int{"7.11": 1}})
	require.NoError(t, err)
	var o struct {
		Sensors  map[string]int `json:"sensors"`
		Rollouts []struct {
			Compat   struct{ Sensors, Excluded json.RawMessage } `json:"compat"`
			Sensors  json.RawMessage                             `json:"sensors"`
			Excludes json.RawMessage                             `json:"excludes"`
			Gate     struct {
				Excluded *int64 `json:"excluded"`
			} `json:"gate"`
		} `json:"rollouts"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	require.NoError(t, dec.Decode(&o))
	require.NotEmpty(t, o.Sensors, "overview sensors: %s", b)
	require.Len(t, o.Rollouts, 1)
	r := o.Rollouts[0]
	for name, raw := range map[string]json.RawMessage{"compat.sensors": r.Compat.Sensors, "compat.excluded": r.Compat.Excluded, "sensors": r.Sensors, "excludes": r.Excludes} {
		require.NotEmpty(t, raw, "the view has no %s: %s", name, b)
	}
	require.NotNil(t, r.Gate.Excluded, "the view's gate has no excluded: %s", b)

	rec := httptest.NewRecorder()
	dashboard.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/app.js", nil))
	app := rec.Body.String()
	for _, read := range []string{"obj(r.compat)", "c.sensors", "c.excluded", "sensorCounts(r.sensors)", "arr(r.excludes)", "g.excluded", "sensorCounts(data.sensors)"} {
		require.Contains(t, app, read)
	}
}

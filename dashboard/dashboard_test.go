package dashboard_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/dashboard"
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

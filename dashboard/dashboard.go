// Package dashboard serves the web dashboard of ringfence-server: one HTML
// page, its stylesheet and its script, embedded in the binary. The page polls
// GET /v1/rollouts and posts operator actions to /v1/rollouts/{channel}/{action};
// it loads nothing from outside the server, so it works on an offline network.
//
// The server mounts Handler at "/" beside its own /v1/ and /metrics routes.
package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed assets
var assets embed.FS

// contentSecurityPolicy allows the page's own script, stylesheet and API and
// nothing else: no inline script or style, no plugins, no framing. The script
// builds every element from API data with textContent, so an injected string
// cannot run even if a rule here were missing.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; " +
	"form-action 'none'; frame-ancestors 'none'"

// contentTypes maps the extensions of the assets to their Content-Type. It is
// explicit because mime.TypeByExtension reads the host's tables (the Windows
// registry can map .js to text/plain, which a browser refuses to run).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

type asset struct {
	name        string
	contentType string
	etag        string
	body        []byte
}

// files holds the assets by URL path, read once from the embedded tree.
var files = mustLoad()

func mustLoad() map[string]asset {
	out := map[string]asset{}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("%s: no Content-Type for %q; add it to contentTypes", p, path.Ext(p))
		}
		b, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		name := strings.TrimPrefix(p, "assets")
		out[name] = asset{name: path.Base(p), contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, body: b}
		return nil
	})
	if err != nil {
		panic("dashboard: load embedded assets: " + err.Error())
	}
	out["/"] = out["/index.html"]
	return out
}

// Handler returns the handler of the dashboard's files: index.html at "/" and
// the assets beside it by name. Every response carries Cache-Control: no-cache
// (the browser revalidates with the ETag, so a new binary's page shows at
// once), a strict Content-Security-Policy and nosniff. Any other path is a
// 404 and any method other than GET or HEAD a 405.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "dashboard: method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
	})
}

package server

import (
	"net/http"
)

// handleBackup is GET /v1/state/backup (operator token): a consistent copy
// of server.db from one read transaction, streamed while the server keeps
// taking telemetry and decisions. The copy is a server.db: 'ringfence-server
// state check --file' checks it, and a stopped server starts from it.
//
// The size is not known before the copy starts, so a failure half-way
// cannot change the status any more: the connection is then cut
// (http.ErrAbortHandler), and the client sees a broken transfer rather
// than a short file that looks complete.
func (s *Server) handleBackup(w http.ResponseWriter, r *http.Request) {
	name := "server-" + s.clock.Now().UTC().Format("20060102T150405Z") + ".db"
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	n, err := s.store.Backup(w)
	if err == nil {
		s.log.Info("state backup", "bytes", n)
		return
	}
	s.log.Error("state backup", "err", err, "bytes_sent", n)
	if n > 0 {
		panic(http.ErrAbortHandler)
	}
	h.Del("Content-Disposition")
	httpError(w, http.StatusInternalServerError, "server: state backup: "+err.Error())
}

package health

import (
	"encoding/json"
	"net/http"
)

// Handler serves GET (and HEAD) /health: the JSON report of a fresh
// evaluation, with status 200 when healthy or degraded and 503 when
// unhealthy, so that a load balancer stops sending work only when the
// relay cannot do any. Other methods get 405. A read counts as an
// evaluation (a status change it finds is raised at once) but not as a
// Check: it does not move the baseline of pool rejections.
func (m *Monitor) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		r := m.check(false)
		body, err := json.Marshal(r)
		if err != nil {
			http.Error(w, "encoding the health report: "+err.Error(), http.StatusInternalServerError)
			return
		}
		code := http.StatusOK
		if r.Overall == Unhealthy {
			code = http.StatusServiceUnavailable
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		if req.Method == http.MethodGet {
			_, _ = w.Write(append(body, '\n'))
		}
	})
}

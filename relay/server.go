package relay

import (
	"net/http"

	"github.com/vsm-relay/relay/metrics"
)

// handler serves /health, /healthz, /readyz and /metrics. Each answers GET
// and HEAD; any other method gets 405 with an Allow header.
func (r *Relay) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, req *http.Request) {
		// Run makes the monitor before it stores consuming; loading
		// consuming first is what makes the monitor safe to read here,
		// where a check of the field itself would race with Run.
		if !r.consuming.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		r.monitor.Handler().ServeHTTP(w, req)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !r.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", metrics.Handler(r.registry))
	return mux
}

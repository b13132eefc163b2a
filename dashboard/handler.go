package dashboard

import (
	"bufio"
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"strconv"
	"time"
)

//go:embed static
var static embed.FS

// csp allows nothing from elsewhere: the page, its stylesheet and script
// and its requests (the event stream, the admin API) all come from the
// relay itself.
const csp = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// writeTimeout bounds one write of the event stream.
const writeTimeout = 10 * time.Second

// Register mounts the page, its assets and the event stream on mux:
// GET / (the page alone, not every path), GET /assets/ and GET /events.
func (h *Hub) Register(mux *http.ServeMux) {
	mux.Handle("GET /{$}", h.Page())
	mux.Handle("GET /assets/", h.Page())
	mux.Handle("GET /events", h.Events())
}

// Handler serves what Register mounts, for use on its own.
func (h *Hub) Handler() http.Handler {
	mux := http.NewServeMux()
	h.Register(mux)
	return mux
}

// Page serves the live page at "/" and its stylesheet and script under
// "/assets/", all embedded in the binary.
func (h *Hub) Page() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		// The embedded tree is fixed at build time; this cannot happen.
		return http.NotFoundHandler()
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-cache")
		switch {
		case r.URL.Path == "/" || r.URL.Path == "":
			http.ServeFileFS(w, r, sub, "index.html")
		case len(r.URL.Path) > len("/assets/") && r.URL.Path[:len("/assets/")] == "/assets/":
			r2 := r.Clone(r.Context())
			r2.URL.Path = r.URL.Path[len("/assets"):]
			if r2.URL.Path == "/index.html" {
				http.NotFound(w, r)
				return
			}
			files.ServeHTTP(w, r2)
		default:
			http.NotFound(w, r)
		}
	})
}

// Events serves GET /events as server-sent events: at once the latest
// health report, stats and events, then every message as it is
// published, each flushed on its own, with a comment every Heartbeat
// when there is nothing to say. A stream that fell behind is told how
// many messages it missed with a "dropped" message. The stream ends when
// the request's context ends or the hub closes.
func (h *Hub) Events() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		s, first := h.subscribe()
		if s == nil {
			http.Error(w, "the relay is stopping", http.StatusServiceUnavailable)
			return
		}
		defer h.unsubscribe(s)
		hd := w.Header()
		hd.Set("Content-Type", "text/event-stream")
		hd.Set("Cache-Control", "no-store")
		hd.Set("X-Accel-Buffering", "no") // nginx: do not hold the stream back
		w.WriteHeader(http.StatusOK)

		bw := bufio.NewWriter(w)
		// A browser that stops reading must not hold this stream (and
		// Close, which waits for it) for ever: every burst of writes has
		// writeTimeout to go out. Servers that cannot set deadlines say
		// so with an error, which is fine.
		arm := func() { _ = rc.SetWriteDeadline(time.Now().Add(writeTimeout)) }
		flush := func() bool { return bw.Flush() == nil && rc.Flush() == nil }
		arm()
		// Reconnect quickly after the relay restarts.
		bw.WriteString("retry: 2000\n\n")
		for _, m := range first {
			writeMessage(bw, m)
		}
		if !flush() {
			return
		}
		beat := time.NewTicker(h.opt.Heartbeat)
		defer beat.Stop()
		var told uint64
		for {
			select {
			case <-r.Context().Done():
				return
			case <-h.done:
				return
			case <-beat.C:
				arm()
				bw.WriteString(": ping\n\n")
			case m := <-s.ch:
				arm()
				if n := s.dropped.Load(); n != told {
					told = n
					writeMessage(bw, message{kind: "dropped", data: []byte(`{"dropped":` + strconv.FormatUint(n, 10) + `}`)})
				}
				writeMessage(bw, m)
			}
			if !flush() {
				return
			}
		}
	})
}

// writeMessage writes one SSE message; a payload with line breaks takes
// one data line each, as the format asks.
func writeMessage(w *bufio.Writer, m message) {
	if m.id != 0 {
		w.WriteString("id: ")
		w.WriteString(strconv.FormatUint(m.id, 10))
		w.WriteByte('\n')
	}
	w.WriteString("event: ")
	w.WriteString(m.kind)
	w.WriteByte('\n')
	data := bytes.ReplaceAll(m.data, []byte("\r\n"), []byte("\n"))
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		w.WriteString("data: ")
		w.Write(bytes.TrimSuffix(line, []byte("\r")))
		w.WriteByte('\n')
	}
	w.WriteByte('\n')
}

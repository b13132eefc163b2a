package admin

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/vsm-relay/relay/algedonic"
)

// ErrNotFound is what Controls return for a breaker or queue the relay
// does not have; the handler answers 404.
var ErrNotFound = errors.New("admin: no such name")

// Controls are the relay's levers. Every method must be safe for
// concurrent use; a name the relay does not know returns an error that
// wraps ErrNotFound.
type Controls interface {
	// OpenBreaker forces the breaker open; it stays open through its
	// reset timeouts until CloseBreaker.
	OpenBreaker(name string) error
	// CloseBreaker closes the breaker, clears its counts and lifts a
	// forced open.
	CloseBreaker(name string) error
	// PauseQueue holds the queue's intake; its tasks stay in the broker.
	PauseQueue(queue string) error
	// ResumeQueue releases a held intake.
	ResumeQueue(queue string) error
	// Reload reads the configuration again. An invalid one is refused
	// whole with every problem in problems; err is for failures that are
	// not the configuration's fault.
	Reload() (problems []string, err error)
}

// By is who every action is attributed to in answers and events.
const By = "operator"

// Options configure the handler.
type Options struct {
	// Token is the bearer token callers must present. Empty disables
	// the endpoints: every /admin/ path answers 404.
	Token string
	// Controls carry the actions out. Required when Token is set.
	Controls Controls
	// Logger records every action. Nil discards the records.
	Logger *slog.Logger
	// Now stamps answers. Nil means time.Now.
	Now func() time.Time
}

// Handler serves the paths under /admin/. It is safe for concurrent use.
type Handler struct {
	digest      [sha256.Size]byte
	fingerprint string
	enabled     bool
	controls    Controls
	log         *slog.Logger
	now         func() time.Time
	mux         *http.ServeMux
}

// New returns the handler; mount it at "/admin/". It fails only when a
// token is set without Controls to act on.
func New(o Options) (*Handler, error) {
	if o.Token != "" && o.Controls == nil {
		return nil, errors.New("admin: a token is set but no Controls are given")
	}
	h := &Handler{enabled: o.Token != "", controls: o.Controls, log: o.Logger, now: o.Now}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.enabled {
		h.digest = sha256.Sum256([]byte(o.Token))
		h.fingerprint = Fingerprint(o.Token)
	}
	h.mux = http.NewServeMux()
	h.route("/admin/breakers/{name}/open", h.breaker("open", "open", Controls.OpenBreaker))
	h.route("/admin/breakers/{name}/close", h.breaker("close", "closed", Controls.CloseBreaker))
	h.route("/admin/queues/{name}/pause", h.queue("pause", "paused", Controls.PauseQueue))
	h.route("/admin/queues/{name}/resume", h.queue("resume", "running", Controls.ResumeQueue))
	h.route("/admin/reload", h.reload)
	h.mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such admin endpoint: " + r.URL.Path})
	})
	return h, nil
}

// Fingerprint names a token in logs without giving it away: the first
// eight hex digits of its SHA-256.
func Fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:4])
}

// route registers fn for POST on pattern and a 405 for every other method.
func (h *Handler) route(pattern string, fn http.HandlerFunc) {
	h.mux.HandleFunc("POST "+pattern, fn)
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST"})
	})
}

// ServeHTTP checks the token, then routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.enabled {
		http.NotFound(w, r)
		return
	}
	token, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		h.log.Warn("admin request refused: no bearer token",
			slog.String("remote", r.RemoteAddr), slog.String("method", r.Method), slog.String("path", r.URL.Path))
		w.Header().Set("WWW-Authenticate", `Bearer realm="relay admin"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing Authorization: Bearer <token>"})
		return
	}
	got := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(got[:], h.digest[:]) != 1 {
		h.log.Warn("admin request refused: wrong token",
			slog.String("remote", r.RemoteAddr), slog.String("token", Fingerprint(token)),
			slog.String("method", r.Method), slog.String("path", r.URL.Path))
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "wrong token"})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	h.mux.ServeHTTP(w, r)
}

// bearer extracts the token of an "Authorization: Bearer <token>" header;
// the scheme is case-insensitive (RFC 9110, 11.1).
func bearer(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// breaker makes the handler of one breaker action.
func (h *Handler) breaker(action, state string, do func(Controls, string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h.act(w, r, "breaker", action, state, do)
	}
}

// queue makes the handler of one queue action.
func (h *Handler) queue(action, state string, do func(Controls, string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h.act(w, r, "queue", action, state, do)
	}
}

// act calls the control for the named thing and answers with the outcome.
func (h *Handler) act(w http.ResponseWriter, r *http.Request, kind, action, state string, do func(Controls, string) error) {
	name := r.PathValue("name")
	at := h.now()
	err := do(h.controls, name)
	attrs := append(who(r, h.fingerprint), slog.String(kind, name), slog.String("action", action), slog.Time("at", at))
	answer := map[string]any{kind: name, "action": action, "by": By, "at": algedonic.FormatTime(at)}
	switch {
	case err == nil:
		answer["state"] = state
		h.log.LogAttrs(r.Context(), slog.LevelInfo, "admin action", attrs...)
		writeJSON(w, http.StatusOK, answer)
	case errors.Is(err, ErrNotFound):
		answer["error"] = "no " + kind + " named " + quote(name)
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "admin action refused: unknown "+kind, attrs...)
		writeJSON(w, http.StatusNotFound, answer)
	default:
		answer["error"] = err.Error()
		h.log.LogAttrs(r.Context(), slog.LevelError, "admin action failed", append(attrs, slog.String("error", err.Error()))...)
		writeJSON(w, http.StatusInternalServerError, answer)
	}
}

// reload reads the configuration again.
func (h *Handler) reload(w http.ResponseWriter, r *http.Request) {
	at := h.now()
	problems, err := h.controls.Reload()
	attrs := append(who(r, h.fingerprint), slog.String("action", "reload"), slog.Time("at", at))
	answer := map[string]any{"action": "reload", "by": By, "at": algedonic.FormatTime(at)}
	switch {
	case len(problems) > 0:
		answer["error"] = "the configuration is invalid; the running one stays"
		answer["problems"] = problems
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "admin reload refused",
			append(attrs, slog.Any("problems", problems))...)
		writeJSON(w, http.StatusUnprocessableEntity, answer)
	case err != nil:
		answer["error"] = err.Error()
		h.log.LogAttrs(r.Context(), slog.LevelError, "admin reload failed", append(attrs, slog.String("error", err.Error()))...)
		writeJSON(w, http.StatusInternalServerError, answer)
	default:
		answer["state"] = "reloaded"
		h.log.LogAttrs(r.Context(), slog.LevelInfo, "admin action", attrs...)
		writeJSON(w, http.StatusOK, answer)
	}
}

// who names the caller for the log: the peer address, the client a proxy
// says it forwarded for (as claimed, not checked), and the token's
// fingerprint.
func who(r *http.Request, fingerprint string) []slog.Attr {
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs, slog.String("remote", r.RemoteAddr))
	if fwd := r.Header.Get("X-Forwarded-For"); fwd != "" {
		attrs = append(attrs, slog.String("forwarded_for", fwd))
	}
	return append(attrs, slog.String("token", fingerprint))
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		code = http.StatusInternalServerError
		body.Reset()
		body.WriteString(`{"error":"encoding the answer failed"}` + "\n")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(body.Bytes())
}

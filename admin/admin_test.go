package admin_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vsm-relay/relay/admin"
)

const token = "s3cret-token"

var fixed = time.Date(2026, 11, 29, 14, 0, 0, 123e6, time.UTC)

// fakeControls records every call and knows a fixed set of names.
type fakeControls struct {
	mu       sync.Mutex
	calls    []string
	breakers []string
	queues   []string
	problems []string
	fail     error
}

func (f *fakeControls) record(call, name string, known []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call+" "+name)
	if f.fail != nil {
		return f.fail
	}
	if !slices.Contains(known, name) {
		return fmt.Errorf("%w: %q", admin.ErrNotFound, name)
	}
	return nil
}

func (f *fakeControls) OpenBreaker(n string) error  { return f.record("OpenBreaker", n, f.breakers) }
func (f *fakeControls) CloseBreaker(n string) error { return f.record("CloseBreaker", n, f.breakers) }
func (f *fakeControls) PauseQueue(q string) error   { return f.record("PauseQueue", q, f.queues) }
func (f *fakeControls) ResumeQueue(q string) error  { return f.record("ResumeQueue", q, f.queues) }
func (f *fakeControls) Reload() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "Reload")
	return f.problems, f.fail
}

func (f *fakeControls) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func newFake() *fakeControls {
	return &fakeControls{breakers: []string{"llm_api", "external_api"}, queues: []string{"tasks.agent", "outbound.mail"}}
}

func newHandler(t *testing.T, tok string, c admin.Controls, log *bytes.Buffer) http.Handler {
	t.Helper()
	var logger *slog.Logger
	if log != nil {
		logger = slog.New(slog.NewJSONHandler(log, nil))
	}
	h, err := admin.New(admin.Options{Token: tok, Controls: c, Logger: logger, Now: func() time.Time { return fixed }})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func do(h http.Handler, method, path, auth string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	req.RemoteAddr = "192.0.2.7:41000"
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func decode(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json; body %s", ct, rec.Body)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, rec.Body)
	}
	return m
}

func TestDisabledWithoutTokenAnswers404Everywhere(t *testing.T) {
	fake := newFake()
	h := newHandler(t, "", fake, nil)
	for _, path := range []string{"/admin/breakers/llm_api/open", "/admin/queues/tasks.agent/pause", "/admin/reload", "/admin/", "/admin/nothing"} {
		for _, auth := range []string{"", "Bearer " + token, "Bearer "} {
			if rec := do(h, http.MethodPost, path, auth); rec.Code != http.StatusNotFound {
				t.Errorf("POST %s (auth %q) = %d, want 404", path, auth, rec.Code)
			}
		}
	}
	if calls := fake.Calls(); len(calls) != 0 {
		t.Errorf("controls called while disabled: %v", calls)
	}
}

func TestAuthorization(t *testing.T) {
	tests := []struct {
		name      string
		auth      string
		want      int
		challenge bool
	}{
		{"missing", "", http.StatusUnauthorized, true},
		{"other scheme", "Basic dXNlcjpwYXNz", http.StatusUnauthorized, true},
		{"empty bearer", "Bearer ", http.StatusUnauthorized, true},
		{"wrong token", "Bearer nope", http.StatusForbidden, false},
		{"token prefix", "Bearer " + token[:len(token)-1], http.StatusForbidden, false},
		{"token longer", "Bearer " + token + "x", http.StatusForbidden, false},
		{"right token", "Bearer " + token, http.StatusOK, false},
		{"scheme in lower case", "bearer " + token, http.StatusOK, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFake()
			h := newHandler(t, token, fake, nil)
			rec := do(h, http.MethodPost, "/admin/breakers/llm_api/open", tt.auth)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
			decode(t, rec)
			if got := rec.Header().Get("WWW-Authenticate"); (got != "") != tt.challenge || (tt.challenge && !strings.HasPrefix(got, "Bearer")) {
				t.Errorf("WWW-Authenticate = %q, want a Bearer challenge: %v", got, tt.challenge)
			}
			wantCalls := 0
			if tt.want == http.StatusOK {
				wantCalls = 1
			}
			if n := len(fake.Calls()); n != wantCalls {
				t.Errorf("controls called %d times, want %d", n, wantCalls)
			}
		})
	}
}

func TestActions(t *testing.T) {
	tests := []struct {
		path     string
		call     string
		want     int
		wantJSON map[string]any
	}{
		{"/admin/breakers/llm_api/open", "OpenBreaker llm_api", 200,
			map[string]any{"breaker": "llm_api", "action": "open", "state": "open", "by": "operator", "at": "2026-11-29T14:00:00.123Z"}},
		{"/admin/breakers/external_api/close", "CloseBreaker external_api", 200,
			map[string]any{"breaker": "external_api", "action": "close", "state": "closed", "by": "operator", "at": "2026-11-29T14:00:00.123Z"}},
		{"/admin/queues/tasks.agent/pause", "PauseQueue tasks.agent", 200,
			map[string]any{"queue": "tasks.agent", "action": "pause", "state": "paused", "by": "operator", "at": "2026-11-29T14:00:00.123Z"}},
		{"/admin/queues/outbound.mail/resume", "ResumeQueue outbound.mail", 200,
			map[string]any{"queue": "outbound.mail", "action": "resume", "state": "running", "by": "operator", "at": "2026-11-29T14:00:00.123Z"}},
		{"/admin/reload", "Reload", 200,
			map[string]any{"action": "reload", "state": "reloaded", "by": "operator", "at": "2026-11-29T14:00:00.123Z"}},
		{"/admin/breakers/nope/open", "OpenBreaker nope", 404,
			map[string]any{"breaker": "nope", "action": "open", "by": "operator", "at": "2026-11-29T14:00:00.123Z", "error": `no breaker named "nope"`}},
		{"/admin/breakers/nope/close", "CloseBreaker nope", 404,
			map[string]any{"breaker": "nope", "action": "close", "by": "operator", "at": "2026-11-29T14:00:00.123Z", "error": `no breaker named "nope"`}},
		{"/admin/queues/no.such.queue/pause", "PauseQueue no.such.queue", 404,
			map[string]any{"queue": "no.such.queue", "action": "pause", "by": "operator", "at": "2026-11-29T14:00:00.123Z", "error": `no queue named "no.such.queue"`}},
		{"/admin/queues/no.such.queue/resume", "ResumeQueue no.such.queue", 404,
			map[string]any{"queue": "no.such.queue", "action": "resume", "by": "operator", "at": "2026-11-29T14:00:00.123Z", "error": `no queue named "no.such.queue"`}},
		{"/admin/queues/a%2Fb/pause", "PauseQueue a/b", 404,
			map[string]any{"queue": "a/b", "action": "pause", "by": "operator", "at": "2026-11-29T14:00:00.123Z", "error": `no queue named "a/b"`}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			fake := newFake()
			var log bytes.Buffer
			h := newHandler(t, token, fake, &log)
			rec := do(h, http.MethodPost, tt.path, "Bearer "+token)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
			if got := decode(t, rec); !equalJSON(got, tt.wantJSON) {
				t.Errorf("answer %v, want %v", got, tt.wantJSON)
			}
			if calls := fake.Calls(); !slices.Equal(calls, []string{tt.call}) {
				t.Errorf("calls %v, want [%s]", calls, tt.call)
			}
			assertLogged(t, &log, "192.0.2.7:41000", admin.Fingerprint(token))
			if strings.Contains(log.String(), token) {
				t.Errorf("the log shows the token itself: %s", log.String())
			}
		})
	}
}

func equalJSON(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// assertLogged checks the one record of the action says who, what and when.
func assertLogged(t *testing.T, log *bytes.Buffer, remote, fingerprint string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one log record, got %d: %s", len(lines), log)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["remote"] != remote || rec["token"] != fingerprint || rec["action"] == nil || rec["at"] != fixed.Format(time.RFC3339Nano) {
		t.Errorf("log record lacks who/what/when: %v", rec)
	}
}

func TestReloadRefusedAnswers422WithEveryProblem(t *testing.T) {
	fake := newFake()
	fake.problems = []string{"breakers.llm_api.failure_threshold: must be above zero", "work.tasks.target: no target named \"x\""}
	var log bytes.Buffer
	h := newHandler(t, token, fake, &log)
	rec := do(h, http.MethodPost, "/admin/reload", "Bearer "+token)
	if rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("status %d, want 422: %s", rec.Code, rec.Body)
	}
	var got struct {
		Problems []string `json:"problems"`
		Error    string   `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Problems, fake.problems) || got.Error == "" {
		t.Errorf("answer %+v, want the problems %v and an error", got, fake.problems)
	}
	assertLogged(t, &log, "192.0.2.7:41000", admin.Fingerprint(token))
}

func TestControlFailureAnswers500(t *testing.T) {
	for _, path := range []string{"/admin/breakers/llm_api/open", "/admin/queues/tasks.agent/resume", "/admin/reload"} {
		fake := newFake()
		fake.fail = errors.New("broker unreachable")
		h := newHandler(t, token, fake, nil)
		rec := do(h, http.MethodPost, path, "Bearer "+token)
		if rec.Code != http.StatusInternalServerError {
			t.Fatalf("%s: status %d, want 500", path, rec.Code)
		}
		if got := decode(t, rec); got["error"] != "broker unreachable" {
			t.Errorf("%s: answer %v", path, got)
		}
	}
}

func TestRouting(t *testing.T) {
	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/admin/breakers/llm_api/open", http.StatusMethodNotAllowed},
		{http.MethodPut, "/admin/queues/tasks.agent/pause", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/admin/reload", http.StatusMethodNotAllowed},
		{http.MethodPost, "/admin/breakers/llm_api/explode", http.StatusNotFound},
		{http.MethodPost, "/admin/breakers/llm_api", http.StatusNotFound},
		{http.MethodPost, "/admin/unknown", http.StatusNotFound},
		{http.MethodGet, "/admin/", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			fake := newFake()
			h := newHandler(t, token, fake, nil)
			rec := do(h, tt.method, tt.path, "Bearer "+token)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d", rec.Code, tt.want)
			}
			decode(t, rec)
			if tt.want == http.StatusMethodNotAllowed && rec.Header().Get("Allow") != http.MethodPost {
				t.Errorf("Allow = %q, want POST", rec.Header().Get("Allow"))
			}
			if calls := fake.Calls(); len(calls) != 0 {
				t.Errorf("controls called: %v", calls)
			}
			// Without the token, the same requests say nothing of routes.
			if rec := do(h, tt.method, tt.path, ""); rec.Code != http.StatusUnauthorized {
				t.Errorf("without a token: %d, want 401", rec.Code)
			}
		})
	}
}

func TestNewNeedsControlsWithToken(t *testing.T) {
	if _, err := admin.New(admin.Options{Token: token}); err == nil {
		t.Error("New with a token and no Controls: no error")
	}
	if _, err := admin.New(admin.Options{}); err != nil {
		t.Errorf("New disabled: %v", err)
	}
}

func TestFingerprint(t *testing.T) {
	a, b := admin.Fingerprint("one"), admin.Fingerprint("two")
	if a == b || !strings.HasPrefix(a, "sha256:") || len(a) != len("sha256:")+8 || strings.Contains(a, "one") {
		t.Errorf("fingerprints %q and %q", a, b)
	}
}

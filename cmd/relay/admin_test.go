package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vsm-relay/relay/admin"
)

const adminToken = "s3cret"

// fakeControls records what the commands asked the relay for.
type fakeControls struct {
	mu       sync.Mutex
	calls    []string
	problems []string
}

func (f *fakeControls) do(call, name string, known ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, strings.TrimSpace(call+" "+name))
	if name != "" && !slices.Contains(known, name) {
		return fmt.Errorf("%w: %s", admin.ErrNotFound, name)
	}
	return nil
}

func (f *fakeControls) OpenBreaker(n string) error  { return f.do("OpenBreaker", n, "llm_api") }
func (f *fakeControls) CloseBreaker(n string) error { return f.do("CloseBreaker", n, "llm_api") }
func (f *fakeControls) PauseQueue(q string) error   { return f.do("PauseQueue", q, "vsm.tasks.llm") }
func (f *fakeControls) ResumeQueue(q string) error  { return f.do("ResumeQueue", q, "vsm.tasks.llm") }
func (f *fakeControls) Reload() ([]string, error) {
	_ = f.do("Reload", "")
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.problems), nil
}

func (f *fakeControls) setProblems(p ...string) {
	f.mu.Lock()
	f.problems = p
	f.mu.Unlock()
}

func (f *fakeControls) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// adminRelay serves the admin endpoints with token (none: disabled) and
// returns its HOST:PORT and its controls.
func adminRelay(t *testing.T, token string) (string, *fakeControls) {
	t.Helper()
	fake := &fakeControls{}
	h, err := admin.New(admin.Options{Token: token, Controls: fake,
		Now: func() time.Time { return time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), fake
}

func TestAdminCommands(t *testing.T) {
	tests := []struct {
		args []string
		call string
		want string
	}{
		{[]string{"breaker", "open", "llm_api"}, "OpenBreaker llm_api", "breaker llm_api: open (by operator at 2026-11-29T14:00:00.000Z)\n"},
		{[]string{"breaker", "close", "llm_api"}, "CloseBreaker llm_api", "breaker llm_api: closed (by operator at 2026-11-29T14:00:00.000Z)\n"},
		{[]string{"queue", "pause", "vsm.tasks.llm"}, "PauseQueue vsm.tasks.llm", "queue vsm.tasks.llm: paused (by operator at 2026-11-29T14:00:00.000Z)\n"},
		{[]string{"queue", "resume", "vsm.tasks.llm"}, "ResumeQueue vsm.tasks.llm", "queue vsm.tasks.llm: running (by operator at 2026-11-29T14:00:00.000Z)\n"},
		{[]string{"reload"}, "Reload", "configuration reloaded (by operator at 2026-11-29T14:00:00.000Z)\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			for _, via := range []string{"flag", "env"} {
				addr, fake := adminRelay(t, adminToken)
				args := append(slices.Clone(tt.args), "--addr", addr)
				env := []string{"RELAY_HTTP_ADMIN_TOKEN=" + adminToken}
				if via == "flag" {
					args = append(args, "--token", adminToken)
					env = []string{"RELAY_HTTP_ADMIN_TOKEN=wrong"}
				}
				code, out, errOut := runExe(t, env, args...)
				if code != 0 || out != tt.want || errOut != "" {
					t.Fatalf("token by %s: exit %d, stdout %q, stderr %q; want 0, %q", via, code, out, errOut, tt.want)
				}
				if calls := fake.Calls(); !slices.Equal(calls, []string{tt.call}) {
					t.Errorf("token by %s: calls %v, want [%s]", via, calls, tt.call)
				}
			}
		})
	}
}

func TestAdminCommandsRefused(t *testing.T) {
	addr, fake := adminRelay(t, adminToken)
	fake.setProblems("breakers.llm_api.failure_threshold: must be above zero", "amqp.url: is empty")
	disabled, _ := adminRelay(t, "")
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	tests := []struct {
		name     string
		args     []string
		wantExit int
		wantOut  string
		wantErr  string
	}{
		{"wrong token", []string{"breaker", "open", "llm_api", "--addr", addr, "--token", "nope"}, 1, "",
			"relay: the relay refused the token (403)\n"},
		{"unknown breaker", []string{"breaker", "close", "nope", "--addr", addr, "--token", adminToken}, 1, "",
			"relay: no breaker named \"nope\" (404 Not Found)\n"},
		{"unknown queue", []string{"queue", "pause", "no.such.q", "--addr", addr, "--token", adminToken}, 1, "",
			"relay: no queue named \"no.such.q\" (404 Not Found)\n"},
		{"invalid configuration", []string{"reload", "--addr", addr, "--token", adminToken}, 1, "",
			"breakers.llm_api.failure_threshold: must be above zero\namqp.url: is empty\n" +
				"relay: configuration refused, the running one stays: 2 problem(s)\n"},
		{"invalid configuration as JSON", []string{"reload", "--json", "--addr", addr, "--token", adminToken}, 1,
			`{"action":"reload","at":"2026-11-29T14:00:00.000Z","by":"operator","error":"the configuration is invalid; the running one stays",` +
				`"problems":["breakers.llm_api.failure_threshold: must be above zero","amqp.url: is empty"]}` + "\n",
			"relay: configuration refused, the running one stays: 2 problem(s)\n"},
		{"admin off", []string{"reload", "--addr", disabled, "--token", adminToken}, 1, "",
			"relay: http://" + disabled + "/admin/reload answered 404: the relay has no admin endpoints (http.admin_token is not set) or this is not a relay\n"},
		{"unreachable", []string{"reload", "--addr", closedAddr, "--token", adminToken}, 1, "",
			"relay: relay unreachable: Post \"http://" + closedAddr + "/admin/reload\": "},
		{"no token", []string{"reload", "--addr", addr}, 2, "", "relay: no admin token: give --token or set RELAY_HTTP_ADMIN_TOKEN\n"},
		{"no name", []string{"breaker", "open", "--addr", addr, "--token", adminToken}, 2, "", "relay: NAME is missing\n"},
		{"two names", []string{"queue", "pause", "a", "b", "--addr", addr, "--token", adminToken}, 2, "", "relay: one QUEUE, got 2 arguments\n"},
		{"no action", []string{"breaker"}, 2, "", "relay: want relay breaker open|close NAME\n"},
		{"unknown action", []string{"queue", "drain", "x"}, 2, "", "relay: unknown command \"drain\" for \"relay queue\"\n"},
		{"reload takes no name", []string{"reload", "x"}, 2, "", "relay: unknown command \"x\" for \"relay reload\"\n"},
		{"bad address", []string{"reload", "--addr", "localhost", "--token", adminToken}, 2, "", "relay: --addr \"localhost\": want HOST:PORT or a URL"},
		{"zero timeout", []string{"reload", "--timeout", "0s", "--token", adminToken}, 2, "", "relay: --timeout must be above zero, got 0s\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runExe(t, []string{"RELAY_HTTP_ADMIN_TOKEN="}, tt.args...)
			if code != tt.wantExit || out != tt.wantOut || !strings.HasPrefix(errOut, tt.wantErr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q and prefix %q", code, out, errOut, tt.wantExit, tt.wantOut, tt.wantErr)
			}
		})
	}
	if calls := fake.Calls(); !slices.Equal(calls, []string{"CloseBreaker nope", "PauseQueue no.such.q", "Reload", "Reload"}) {
		t.Errorf("calls %v", calls)
	}
}

func TestAdminCommandTakesAddressFromConfigurationAndURL(t *testing.T) {
	addr, fake := adminRelay(t, adminToken)
	_, port, _ := net.SplitHostPort(addr)
	code, out, errOut := runExe(t, []string{"RELAY_HTTP_LISTEN=0.0.0.0:" + port, "RELAY_HTTP_ADMIN_TOKEN=" + adminToken}, "breaker", "open", "llm_api")
	if code != 0 || !strings.HasPrefix(out, "breaker llm_api: open") {
		t.Fatalf("address from the configuration: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runExe(t, []string{"RELAY_HTTP_ADMIN_TOKEN=" + adminToken}, "queue", "resume", "vsm.tasks.llm", "--addr", "http://"+addr+"/")
	if code != 0 || !strings.HasPrefix(out, "queue vsm.tasks.llm: running") {
		t.Fatalf("address as a URL: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if calls := fake.Calls(); !slices.Equal(calls, []string{"OpenBreaker llm_api", "ResumeQueue vsm.tasks.llm"}) {
		t.Errorf("calls %v", calls)
	}
}

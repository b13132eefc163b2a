package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const unhealthyReport = `{"overall":"unhealthy","instance":"relay-1","at":"2026-11-29T14:00:00.123Z",
"amqp":{"connected":false,"blocked":false},
"circuit_breakers":{"llm_api":{"state":"open","failure_count":3,"success_count":0},"external_api":{"state":"half_open","failure_count":0,"success_count":1}},
"bulkheads":{"worker_agent":{"available":30,"busy":0,"waiting":0,"capacity":30},"llm_worker":{"available":0,"busy":7,"waiting":12,"capacity":7}},
"reasons":["broker is unreachable","breaker external_api is half_open","breaker llm_api is open"]}
`

// fakeRelay serves body at /health with status code.
func fakeRelay(t *testing.T, code int, contentType, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestStatusPrintsAlignedTables(t *testing.T) {
	tests := []struct {
		name     string
		code     int
		body     string
		wantExit int
		want     string
	}{
		{
			name: "healthy", code: 200, wantExit: 0,
			body: `{"overall":"healthy","instance":"relay-1","at":"2026-11-29T14:00:00.123Z","amqp":{"connected":true,"blocked":false},` +
				`"circuit_breakers":{"amqp":{"state":"closed","failure_count":0,"success_count":0}},` +
				`"bulkheads":{"api_agent":{"available":20,"busy":0,"waiting":0,"capacity":20}}}`,
			want: "relay relay-1: healthy at 2026-11-29T14:00:00.123Z\n" +
				"broker: connected\n" +
				"\n" +
				"BREAKER  STATE   FAILURES  SUCCESSES\n" +
				"amqp     closed  0         0\n" +
				"\n" +
				"BULKHEAD   BUSY  AVAILABLE  WAITING  CAPACITY\n" +
				"api_agent  0     20         0        20\n",
		},
		{
			name: "a shared breaker", code: 200, wantExit: 0,
			body: `{"overall":"healthy","instance":"relay-1","at":"2026-11-29T14:00:00.123Z","amqp":{"connected":true,"blocked":false},` +
				`"circuit_breakers":{"amqp":{"state":"closed","failure_count":0,"success_count":0},"llm_api":{"state":"closed","failure_count":2,"success_count":0,"shared":true}},` +
				`"bulkheads":{}}`,
			want: "relay relay-1: healthy at 2026-11-29T14:00:00.123Z\n" +
				"broker: connected\n" +
				"\n" +
				"BREAKER  STATE            FAILURES  SUCCESSES\n" +
				"amqp     closed           0         0\n" +
				"llm_api  closed (shared)  2         0\n" +
				"\nno bulkheads\n",
		},
		{
			name: "degraded", code: 200, wantExit: 0,
			body: `{"overall":"degraded","instance":"r","at":"2026-11-29T14:00:00.000Z","amqp":{"connected":true,"blocked":true},` +
				`"circuit_breakers":{},"bulkheads":{},"reasons":["broker blocks publishing"]}`,
			want: "relay r: degraded at 2026-11-29T14:00:00.000Z\n" +
				"broker: connected, blocked (publishing stopped by a broker alarm)\n" +
				"  - broker blocks publishing\n" +
				"\nno breakers\n" +
				"\nno bulkheads\n",
		},
		{
			name: "unhealthy", code: 503, wantExit: 1, body: unhealthyReport,
			want: "relay relay-1: unhealthy at 2026-11-29T14:00:00.123Z\n" +
				"broker: disconnected\n" +
				"  - broker is unreachable\n" +
				"  - breaker external_api is half_open\n" +
				"  - breaker llm_api is open\n" +
				"\n" +
				"BREAKER       STATE      FAILURES  SUCCESSES\n" +
				"external_api  half_open  0         1\n" +
				"llm_api       open       3         0\n" +
				"\n" +
				"BULKHEAD      BUSY  AVAILABLE  WAITING  CAPACITY\n" +
				"llm_worker    7     0          12       7\n" +
				"worker_agent  0     30         0        30\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := fakeRelay(t, tt.code, "application/json", tt.body)
			code, out, errOut := runExe(t, nil, "status", "--addr", addr)
			if code != tt.wantExit || out != tt.want || errOut != "" {
				t.Fatalf("exit %d, stderr %q, stdout:\n%s\nwant exit %d, stdout:\n%s", code, errOut, out, tt.wantExit, tt.want)
			}
		})
	}
}

func TestStatusJSONPrintsTheDocumentAsItCame(t *testing.T) {
	addr := fakeRelay(t, 503, "application/json", unhealthyReport)
	code, out, _ := runExe(t, nil, "status", "--json", "--addr", addr)
	if code != 1 || out != unhealthyReport {
		t.Fatalf("exit %d, stdout %q; want 1 and the document", code, out)
	}
}

func TestStatusFailures(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	html := fakeRelay(t, 200, "text/html", "<html>hello</html>")
	missing := fakeRelay(t, 404, "text/plain", "")
	tests := []struct {
		name     string
		args     []string
		wantExit int
		want     string // stderr prefix
	}{
		{"unreachable", []string{"--addr", closedAddr}, 1, "relay: relay unreachable: Get \"http://" + closedAddr + "/health\": "},
		{"not a health report", []string{"--addr", html}, 1, "relay: http://" + html + "/health answered 200 OK with no health report: "},
		{"not found", []string{"--addr", "http://" + missing + "/"}, 1, "relay: http://" + missing + "/health answered 404 Not Found\n"},
		{"bad address", []string{"--addr", "localhost"}, 2, "relay: --addr \"localhost\": want HOST:PORT or a URL: "},
		{"zero timeout", []string{"--timeout", "0s"}, 2, "relay: --timeout must be above zero, got 0s\n"},
		{"bad configuration", []string{"--config", "/nonexistent/relay.yaml"}, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runExe(t, nil, append([]string{"status"}, tt.args...)...)
			if code != tt.wantExit || out != "" || !strings.HasPrefix(errOut, tt.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d and prefix %q", code, out, errOut, tt.wantExit, tt.want)
			}
		})
	}
}

func TestStatusTakesTheAddressFromTheConfiguration(t *testing.T) {
	addr := fakeRelay(t, 200, "application/json",
		`{"overall":"healthy","instance":"from-config","at":"2026-11-29T14:00:00.000Z","amqp":{"connected":true},"circuit_breakers":{},"bulkheads":{}}`)
	_, port, _ := net.SplitHostPort(addr)
	code, out, errOut := runExe(t, []string{"RELAY_HTTP_LISTEN=0.0.0.0:" + port}, "status")
	if code != 0 || !strings.HasPrefix(out, "relay from-config: healthy") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	cfg := writeFile(t, "http: {listen: \"127.0.0.1:"+port+"\"}\n")
	code, out, _ = runExe(t, nil, "status", "--config", cfg)
	if code != 0 || !strings.HasPrefix(out, "relay from-config: healthy") {
		t.Fatalf("with --config: exit %d, stdout %q", code, out)
	}
}

func TestHealthURL(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"127.0.0.1:9090", "http://127.0.0.1:9090/health"},
		{"0.0.0.0:9090", "http://127.0.0.1:9090/health"},
		{":9090", "http://127.0.0.1:9090/health"},
		{"[::]:9090", "http://127.0.0.1:9090/health"},
		{"[::1]:9090", "http://[::1]:9090/health"},
		{"relay:9090", "http://relay:9090/health"},
		{"https://relay.example.com/ops/", "https://relay.example.com/ops/health"},
	}
	for _, tt := range tests {
		got, err := healthURL(tt.addr)
		if err != nil || got != tt.want {
			t.Errorf("healthURL(%q) = %q, %v; want %q", tt.addr, got, err, tt.want)
		}
	}
}

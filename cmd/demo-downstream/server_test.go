package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixed returns a random source that always yields v.
func fixed(v float64) func() float64 { return func() float64 { return v } }

func newServer(t *testing.T, s Settings, random float64) *Server {
	t.Helper()
	srv, err := NewServer(s, fixed(random), nil)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func do(h http.Handler, method, path, body string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestEcho(t *testing.T) {
	h := newServer(t, Settings{}, 0).Handler()
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		header map[string]string
		want   string
	}{
		{
			"JSON body", "POST", "/", "{\n  \"hello\": \"world\"\n}",
			map[string]string{"Content-Type": "application/json", "X-Correlation-ID": "c1", "Idempotency-Key": "m1"},
			`{"echo":{"hello":"world"},"method":"POST","path":"/","content_type":"application/json","correlation_id":"c1","idempotency_key":"m1"}` + "\n",
		},
		{"text body", "POST", "/jobs", "hi \"there\"", nil, `{"echo":"hi \"there\"","method":"POST","path":"/jobs"}` + "\n"},
		{"no body", "PUT", "/", "", nil, `{"echo":"","method":"PUT","path":"/"}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(h, tt.method, tt.path, tt.body, tt.header)
			if rec.Code != 200 || rec.Body.String() != tt.want || rec.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("%d %q %q; want 200 %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String(), tt.want)
			}
		})
	}
}

func TestInjectedFailures(t *testing.T) {
	tests := []struct {
		name     string
		settings Settings
		random   float64
		want     int
	}{
		{"never at rate 0", Settings{FailureRate: 0}, 0, 200},
		{"draw below the rate fails", Settings{FailureRate: 0.5}, 0.49, 503},
		{"draw at the rate succeeds", Settings{FailureRate: 0.5}, 0.5, 200},
		{"always at rate 1", Settings{FailureRate: 1}, 0.999, 503},
		{"chosen status", Settings{FailureRate: 1, FailureStatus: 429}, 0, 429},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, tt.settings, tt.random)
			rec := do(srv.Handler(), "POST", "/", "x", nil)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d", rec.Code, tt.want)
			}
			wantFailures := uint64(0)
			if tt.want != 200 {
				wantFailures = 1
				if rec.Body.String() != `{"error":"injected failure"}`+"\n" {
					t.Errorf("failure body %q", rec.Body.String())
				}
			}
			if got := srv.Stats(); got != (Stats{Requests: 1, Failures: wantFailures}) {
				t.Errorf("stats %+v", got)
			}
		})
	}
}

func TestLatencyDelaysTheAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newServer(t, Settings{Latency: 200 * time.Millisecond}, 0).Handler()
		done := make(chan *httptest.ResponseRecorder, 1)
		go func() { done <- do(h, "POST", "/", "x", nil) }()
		time.Sleep(199 * time.Millisecond)
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("answered before the latency passed")
		default:
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		select {
		case rec := <-done:
			if rec.Code != 200 {
				t.Fatalf("status %d", rec.Code)
			}
		default:
			t.Fatal("no answer once the latency passed")
		}
	})
}

func TestLatencyEndsWithTheRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newServer(t, Settings{Latency: 5 * time.Minute}, 0).Handler()
		ctx, cancel := context.WithCancel(context.Background())
		req := httptest.NewRequest("POST", "/", strings.NewReader("x")).WithContext(ctx)
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() { h.ServeHTTP(rec, req); close(done) }()
		synctest.Wait()
		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("handler still waiting after the client went away")
		}
		if rec.Body.Len() != 0 {
			t.Errorf("wrote %q to a gone client", rec.Body.String())
		}
	})
}

func TestAdminConfig(t *testing.T) {
	srv := newServer(t, Settings{FailureRate: 0.1}, 0)
	h := srv.Handler()
	if rec := do(h, "GET", "/admin/config", "", nil); rec.Code != 200 ||
		rec.Body.String() != `{"failure_rate":0.1,"latency":"0s","failure_status":503}`+"\n" {
		t.Fatalf("GET: %d %s", rec.Code, rec.Body.String())
	}
	tests := []struct {
		name     string
		body     string
		code     int
		want     string
		settings Settings
	}{
		{"partial change keeps the rest", `{"latency":"250ms"}`, 200,
			`{"failure_rate":0.1,"latency":"250ms","failure_status":503}`, Settings{FailureRate: 0.1, Latency: 250 * time.Millisecond}},
		{"every field", `{"failure_rate":1,"latency":"0s","failure_status":500}`, 200,
			`{"failure_rate":1,"latency":"0s","failure_status":500}`, Settings{FailureRate: 1, FailureStatus: 500}},
		{"rate above 1", `{"failure_rate":1.5}`, 400,
			`{"error":"failure_rate: want a number from 0 to 1, got 1.5"}`, Settings{FailureRate: 1, FailureStatus: 500}},
		{"bad latency", `{"latency":"soon"}`, 400,
			`{"error":"latency: want a duration such as \"200ms\", got \"soon\""}`, Settings{FailureRate: 1, FailureStatus: 500}},
		{"latency too long", `{"latency":"2h"}`, 400,
			`{"error":"latency: want 0s to 10m0s, got 2h0m0s"}`, Settings{FailureRate: 1, FailureStatus: 500}},
		{"success status", `{"failure_status":200}`, 400,
			`{"error":"failure_status: want 400 to 599, got 200"}`, Settings{FailureRate: 1, FailureStatus: 500}},
		{"unknown field", `{"failure":1}`, 400,
			`{"error":"want a JSON object with failure_rate, latency and/or failure_status: json: unknown field \"failure\""}`, Settings{FailureRate: 1, FailureStatus: 500}},
		{"back to healthy", `{"failure_rate":0}`, 200,
			`{"failure_rate":0,"latency":"0s","failure_status":500}`, Settings{FailureStatus: 500}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(h, "POST", "/admin/config", tt.body, nil)
			if rec.Code != tt.code || rec.Body.String() != tt.want+"\n" {
				t.Fatalf("%d %s; want %d %s", rec.Code, rec.Body.String(), tt.code, tt.want)
			}
			if got := srv.Settings(); got != tt.settings {
				t.Errorf("settings %+v, want %+v", got, tt.settings)
			}
		})
	}
}

func TestStatsAndHealthz(t *testing.T) {
	srv := newServer(t, Settings{FailureRate: 0.5}, 0.2)
	h := srv.Handler()
	do(h, "POST", "/", "a", nil)
	srv.random = fixed(0.9)
	do(h, "POST", "/", "b", nil)
	if rec := do(h, "GET", "/admin/stats", "", nil); rec.Body.String() != `{"requests":2,"failures":1}`+"\n" {
		t.Errorf("stats %s", rec.Body.String())
	}
	if rec := do(h, "GET", "/healthz", "", nil); rec.Code != 200 || rec.Body.String() != "ok\n" {
		t.Errorf("healthz %d %q", rec.Code, rec.Body.String())
	}
	if rec := do(h, "DELETE", "/admin/config", "", nil); rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, POST" {
		t.Errorf("DELETE /admin/config: %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
	if rec := do(h, "GET", "/admin/nothing", "", nil); rec.Code != http.StatusNotFound {
		t.Errorf("GET /admin/nothing: %d", rec.Code)
	}
}

func TestNewServerRefusesBadSettings(t *testing.T) {
	for _, s := range []Settings{{FailureRate: -0.1}, {Latency: -time.Second}, {FailureStatus: 302}} {
		if _, err := NewServer(s, nil, nil); err == nil {
			t.Errorf("NewServer(%+v) accepted", s)
		}
	}
}

func TestBodyOverTheLimit(t *testing.T) {
	h := newServer(t, Settings{}, 0).Handler()
	rec := do(h, "POST", "/", strings.Repeat("x", maxBody+1), nil)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", rec.Code)
	}
}

func TestParseArgs(t *testing.T) {
	env := map[string]string{"DEMO_FAILURE_RATE": "0.25", "DEMO_LATENCY": "50ms", "DEMO_LISTEN": ":9999"}
	getenv := func(k string) string { return env[k] }
	tests := []struct {
		name    string
		args    []string
		want    config
		wantErr string
		noEnv   bool
	}{
		{"no environment: this machine only", nil, config{listen: "127.0.0.1:8081", settings: Settings{FailureStatus: 503}}, "", true},
		{"environment defaults", nil, config{listen: ":9999", settings: Settings{FailureRate: 0.25, Latency: 50 * time.Millisecond, FailureStatus: 503}}, "", false},
		{"flags win", []string{"--listen", "127.0.0.1:0", "--failure-rate", "1", "--latency", "1s", "--failure-status", "500"},
			config{listen: "127.0.0.1:0", settings: Settings{FailureRate: 1, Latency: time.Second, FailureStatus: 500}}, "", false},
		{"bad rate", []string{"--failure-rate", "half"}, config{}, `--failure-rate: "half" is not a number`, false},
		{"rate out of range", []string{"--failure-rate", "2"}, config{}, "failure_rate: want a number from 0 to 1, got 2", false},
		{"bad latency", []string{"--latency", "200"}, config{}, `--latency: "200" is not a duration such as 200ms`, false},
		{"bad status", []string{"--failure-status", "oops"}, config{}, `--failure-status: "oops" is not a number`, false},
		{"argument", []string{"extra"}, config{}, `unexpected argument "extra"`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ge := getenv
			if tt.noEnv {
				ge = func(string) string { return "" }
			}
			got, err := parseArgs(tt.args, ge, io.Discard)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseArgs = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestRunExitCodes(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"--latency", "x"}, func(string) string { return "" }, &stderr); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
	if code := run([]string{"-h"}, func(string) string { return "" }, io.Discard); code != 0 {
		t.Errorf("-h: exit %d, want 0", code)
	}
	if code := run([]string{"--listen", "256.0.0.1:1"}, func(string) string { return "" }, io.Discard); code != 1 {
		t.Errorf("unusable address: exit %d, want 1", code)
	}
}

func FuzzAdminConfig(f *testing.F) {
	f.Add(`{"failure_rate":0.5,"latency":"200ms"}`)
	f.Add(`{"failure_status":429}`)
	f.Add(`{"latency":"-1s"}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, body string) {
		srv, err := NewServer(Settings{}, fixed(0), nil)
		if err != nil {
			t.Fatal(err)
		}
		rec := do(srv.Handler(), "POST", "/admin/config", body, nil)
		if err := srv.Settings().Validate(); err != nil {
			t.Fatalf("body %q left invalid settings: %v", body, err)
		}
		var answer map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
			t.Fatalf("body %q: answer %q is not JSON", body, rec.Body.String())
		}
		if rec.Code == 200 && srv.Settings().wire().Latency != answer["latency"] {
			t.Fatalf("answer %v does not match settings %+v", answer, srv.Settings())
		}
		if rec.Code != 200 && srv.Settings() != (Settings{}) {
			t.Fatalf("refused body %q changed the settings to %+v", body, srv.Settings())
		}
	})
}

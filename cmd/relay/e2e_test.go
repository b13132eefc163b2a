package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vsm-relay/relay/internal/testbroker"
)

// TestClientCommandsAgainstARunningRelay walks the README's tour with the
// real relay between the commands and a downstream: a task answered, a
// task refused, the breaker opening (seen by watch and status), a task
// waiting in the broker until the downstream recovers, and a clean stop.
func TestClientCommandsAgainstARunningRelay(t *testing.T) {
	url := testbroker.URL(t)
	var failing atomic.Bool
	downstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch {
		case string(body) == "bad":
			http.Error(w, "bad task", http.StatusBadRequest)
		case failing.Load():
			http.Error(w, "down", http.StatusServiceUnavailable)
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"echo":%s,"idempotency_key":%q}`, body, r.Header.Get("Idempotency-Key"))
		}
	}))
	defer downstream.Close()

	queue := testbroker.Unique("cli.e2e.tasks")
	pain, pleasure, hl := testbroker.Unique("cli.e2e.pain"), testbroker.Unique("cli.e2e.pleasure"), testbroker.Unique("cli.e2e.health")
	testbroker.CleanupQueues(t, url, queue, queue+".dlq")
	testbroker.CleanupExchanges(t, url, pain, pleasure, hl)
	cfg := writeFile(t, fmt.Sprintf(`
instance: cli-e2e
http: {listen: "127.0.0.1:0"}
amqp: {url: %q}
breakers:
  defaults: {failure_threshold: 2, success_threshold: 1, reset_timeout: 1s}
  external_api: {}
bulkheads:
  api_agent: {size: 2, overflow: 0, timeout: 5s}
backoff:
  external_api: {max_retries: 0}
targets:
  echo: {url: %q, breaker: external_api, bulkhead: api_agent, backoff: external_api}
work:
  - {queue: %s, target: echo, redelivery: []}
outbound: []
algedonic: {pain_exchange: %s, pleasure_exchange: %s, coalesce: 0s}
health: {exchange: %s, interval: 1h}
`, url, downstream.URL+"/", queue, pain, pleasure, hl))

	relay := start(t, nil, "run", "--config", cfg, "--log-format", "json")
	var running struct {
		HTTP string `json:"http"`
	}
	if err := json.Unmarshal([]byte(relay.waitStderr(`"relay running"`, 30*time.Second)), &running); err != nil || running.HTTP == "" {
		t.Fatalf("no http address in the start line: %v", err)
	}

	// A task answered.
	code, out, errOut := runExe(t, nil, "publish", "--config", cfg, "--queue", queue, "--reply", "--message-id", "task-1", `{"hello":"world"}`)
	if code != 0 || out != `{"echo":{"hello":"world"},"idempotency_key":"task-1"}`+"\n" ||
		errOut != "x-relay-attempts: 1\nx-relay-status: 200\nx-relay-target: echo\n" {
		t.Fatalf("answered task: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// A task refused: 4xx is permanent, dead-lettered at once, and not a
	// breaker failure.
	code, out, errOut = runExe(t, nil, "publish", "--config", cfg, "--queue", queue, "--reply", "bad")
	if code != 1 || !strings.Contains(errOut, "x-relay-error: ") || !strings.Contains(errOut, "x-relay-status: 400\n") {
		t.Fatalf("refused task: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	code, out, errOut = runExe(t, nil, "status", "--addr", running.HTTP)
	if code != 0 || !strings.HasPrefix(out, "relay cli-e2e: healthy at ") || !strings.Contains(out, "\nexternal_api  closed  0         0\n") {
		t.Fatalf("status while healthy: exit %d, stdout:\n%s\nstderr: %s", code, out, errOut)
	}

	// The downstream fails: two failures open the breaker.
	env := []string{"RELAY_ALGEDONIC_PAIN_EXCHANGE=" + pain, "RELAY_ALGEDONIC_PLEASURE_EXCHANGE=" + pleasure, "RELAY_HEALTH_EXCHANGE=" + hl}
	watch := start(t, env, "watch", "--config", cfg, "--signal", "pain")
	watch.waitStderr("watching "+pain+" on ", 10*time.Second)
	failing.Store(true)
	for i := range 2 {
		code, _, errOut = runExe(t, nil, "publish", "--config", cfg, "--queue", queue, "--reply", fmt.Sprintf(`{"n":%d}`, i))
		if code != 1 || !strings.Contains(errOut, "x-relay-status: 503\n") {
			t.Fatalf("task %d to a failing downstream: exit %d, stderr %q", i, code, errOut)
		}
	}
	line := watch.waitStdout(10*time.Second, `"source":"breaker"`, `"event":"open"`)
	if !strings.HasPrefix(line, `{"signal":"pain","source":"breaker","name":"external_api","event":"open",`) {
		t.Errorf("breaker event line = %s", line)
	}
	watch.signal(syscall.SIGINT)
	if code := watch.wait(10 * time.Second); code != 0 {
		t.Errorf("watch exited %d after SIGINT, want 0", code)
	}

	code, out, _ = runExe(t, nil, "status", "--addr", running.HTTP)
	if code != 1 || !strings.Contains(out, "relay cli-e2e: unhealthy") || !strings.Contains(out, "\nexternal_api  open ") {
		t.Fatalf("status with the breaker open: exit %d, stdout:\n%s", code, out)
	}

	// A task published while the downstream is down waits in the broker
	// and is answered once it is back.
	wait := start(t, nil, "publish", "--config", cfg, "--queue", queue, "--reply", "--timeout", "30s", `"queued"`)
	failing.Store(false)
	if code := wait.wait(30 * time.Second); code != 0 || !strings.HasPrefix(wait.out(), `{"echo":"queued"`) {
		t.Fatalf("queued task: exit %d, stdout %q, stderr %q", code, wait.out(), wait.errText())
	}

	relay.signal(syscall.SIGTERM)
	if code := relay.wait(30 * time.Second); code != 0 {
		t.Fatalf("relay exited %d after SIGTERM, want 0; stderr:\n%s", code, relay.errText())
	}
}

package relay

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/internal/testbroker"
)

// A relay whose HTTP server fails while it runs stops, and Run returns
// the server's error, so that the process exits non-zero (Run used to
// return nil, and the process exit 0, with nothing serving /health).
func TestRunReturnsTheHTTPServersError(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("relay.test.lifecycle")
	testbroker.CleanupQueues(t, url, q, q+".dlq")
	pain, pleasure, hx := testbroker.Unique("relay.test.pain"), testbroker.Unique("relay.test.pleasure"), testbroker.Unique("relay.test.health")
	testbroker.CleanupExchanges(t, url, pain, pleasure, hx)
	cfg, err := config.LoadBytes([]byte(`
amqp: {url: "`+url+`", connect_timeout: 10s}
http: {listen: "127.0.0.1:0"}
algedonic: {pain_exchange: `+pain+`, pleasure_exchange: `+pleasure+`}
health: {exchange: `+hx+`}
targets:
  echo: {url: "http://127.0.0.1:9/", breaker: external_api, bulkhead: api_agent, backoff: external_api}
work:
  - {queue: `+q+`, target: echo, redelivery: []}
outbound: []
`), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Instance = "lifecycle-test"
	r, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	deadline := time.Now().Add(15 * time.Second)
	for !r.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("relay not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The listener fails under the server.
	_ = r.listener.Close()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "http server") {
			t.Fatalf("Run returned %v, want the HTTP server's error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after its HTTP server failed")
	}
}

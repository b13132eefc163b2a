package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/bulkhead"
)

// failing is a collector whose every scrape fails.
type failing struct{ desc *prometheus.Desc }

func newFailing() failing {
	return failing{prometheus.NewDesc("relay_test_failing", "Always fails.", nil, nil)}
}

func (f failing) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }
func (f failing) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(f.desc, errors.New("downstream of the scrape is gone"))
}

func scrape(t *testing.T, h http.Handler, accept string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(body)
}

// relayRegistry is a registry as the relay wires it: push metrics, both
// pull collectors, and the runtime collectors.
func relayRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	m, reg := newTest(t)
	m.Queue("vsm.tasks.echo", "echo").Replied.Inc()
	if err := reg.Register(NewBreakerCollector(func() []breaker.Snapshot {
		return []breaker.Snapshot{{Name: "llm_api", State: breaker.Open, FailureCount: 3}}
	})); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(NewBulkheadCollector(func() []bulkhead.Stats {
		return []bulkhead.Stats{{Name: "api_agent", Busy: 4, Available: 16, Capacity: 20, RejectedTimeout: 2}}
	})); err != nil {
		t.Fatal(err)
	}
	if err := RegisterRuntime(reg); err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestHandlerServesTextFormat(t *testing.T) {
	res, body := scrape(t, Handler(relayRegistry(t)), "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status: got %d, want 200; body:\n%s", res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type: got %q, want the text format", ct)
	}
	for _, line := range []string{
		"# TYPE relay_breaker_state gauge\n",
		`relay_breaker_state{breaker="llm_api"} 2` + "\n",
		`relay_breaker_failures{breaker="llm_api"} 3` + "\n",
		`relay_tasks_total{outcome="replied",queue="vsm.tasks.echo"} 1` + "\n",
		`relay_bulkhead_busy{bulkhead="api_agent"} 4` + "\n",
		`relay_bulkhead_rejected_total{bulkhead="api_agent",reason="timeout"} 2` + "\n",
		"# TYPE go_goroutines gauge\n",
		"# TYPE process_start_time_seconds gauge\n",
	} {
		if !strings.Contains(body, line) {
			t.Errorf("body lacks %q", line)
		}
	}
}

func TestHandlerServesOpenMetricsWhenAsked(t *testing.T) {
	res, body := scrape(t, Handler(relayRegistry(t)), "application/openmetrics-text; version=1.0.0")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status: got %d, want 200", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text; version=1.0.0") {
		t.Errorf("Content-Type: got %q, want OpenMetrics", ct)
	}
	if !strings.HasSuffix(body, "# EOF\n") {
		t.Errorf("OpenMetrics body does not end with # EOF")
	}
	// OpenMetrics writes floats with a fraction.
	if !strings.Contains(body, `relay_breaker_state{breaker="llm_api"} 2.0`+"\n") {
		t.Errorf("body lacks relay_breaker_state")
	}
	// An exemplar follows a sample as " # {labels} value".
	if strings.Contains(body, "} # {") {
		t.Errorf("body carries exemplars")
	}
	// _created samples would double the series count for scrapers that do
	// not know them.
	if strings.Contains(body, "_created{") {
		t.Errorf("body carries _created samples")
	}
}

func TestHandlerServesWhatItCanWhenACollectorFails(t *testing.T) {
	reg := relayRegistry(t)
	if err := reg.Register(newFailing()); err != nil {
		t.Fatal(err)
	}
	res, body := scrape(t, Handler(reg), "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status: got %d, want 200 with the metrics that could be gathered", res.StatusCode)
	}
	if !strings.Contains(body, `relay_breaker_state{breaker="llm_api"} 2`) {
		t.Errorf("body lacks the breaker state")
	}
}

func TestHandlerAnswers500WhenNothingCanBeGathered(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(newFailing()); err != nil {
		t.Fatal(err)
	}
	res, body := scrape(t, Handler(reg), "")
	if res.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status: got %d, want 500", res.StatusCode)
	}
	if !strings.Contains(body, "downstream of the scrape is gone") {
		t.Errorf("body %q does not give the collection error", body)
	}
}

func TestHandlerWithNilGathererServesNothing(t *testing.T) {
	res, body := scrape(t, Handler(nil), "")
	if res.StatusCode != http.StatusOK || body != "" {
		t.Fatalf("got %d %q, want 200 and an empty body", res.StatusCode, body)
	}
}

func TestRegisterRuntime(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(NewBulkheadCollector(func() []bulkhead.Stats {
		return []bulkhead.Stats{{Name: "api_agent", Busy: 4, Available: 16, Capacity: 20, RejectedTimeout: 2}}
	})); err != nil {
		t.Fatal(err)
	}
	if err := RegisterRuntime(reg); err != nil {
		t.Fatalf("RegisterRuntime: %v", err)
	}
	got := gatherFamilies(t, reg)
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_start_time_seconds"} {
		if _, ok := got[name]; !ok {
			t.Errorf("%s: not registered", name)
		}
	}
	err := RegisterRuntime(reg)
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("second RegisterRuntime: got %v, want a prometheus.AlreadyRegisteredError", err)
	}
	if err := RegisterRuntime(nil); err == nil {
		t.Errorf("RegisterRuntime(nil): got nil error, want one")
	}
}

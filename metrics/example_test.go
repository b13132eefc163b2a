package metrics_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/bulkhead"
	"github.com/vsm-relay/relay/metrics"
)

func ExampleNew() {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		fmt.Println(err)
		return
	}

	// At setup: resolve the children once per queue and target.
	queue := m.Queue("vsm.tasks.echo", "echo")
	target := m.Target("echo")

	// Per task: no lookups, no allocations.
	queue.InFlight.Inc()
	target.RequestDuration.Observe(0.042)
	target.Responses(http.StatusOK).Inc()
	queue.Replied.Inc()
	queue.Duration.Observe(0.05)
	queue.InFlight.Dec()

	// A second New on the same registry is an error, not a panic.
	_, err = metrics.New(reg)
	fmt.Println(err != nil)

	rec := httptest.NewRecorder()
	metrics.Handler(reg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for line := range strings.Lines(rec.Body.String()) {
		if strings.HasPrefix(line, "relay_tasks_total") || strings.HasPrefix(line, "relay_downstream_responses_total") {
			fmt.Print(line)
		}
	}
	// Output:
	// true
	// relay_downstream_responses_total{class="2xx",target="echo"} 1
	// relay_downstream_responses_total{class="3xx",target="echo"} 0
	// relay_downstream_responses_total{class="4xx",target="echo"} 0
	// relay_downstream_responses_total{class="5xx",target="echo"} 0
	// relay_downstream_responses_total{class="error",target="echo"} 0
	// relay_tasks_total{outcome="completed",queue="vsm.tasks.echo"} 0
	// relay_tasks_total{outcome="dead_lettered",queue="vsm.tasks.echo"} 0
	// relay_tasks_total{outcome="redelivered",queue="vsm.tasks.echo"} 0
	// relay_tasks_total{outcome="replied",queue="vsm.tasks.echo"} 1
	// relay_tasks_total{outcome="requeued",queue="vsm.tasks.echo"} 0
}

func ExampleNewBreakerCollector() {
	reg := prometheus.NewRegistry()
	// In the relay, the function returns the Snapshot of every breaker.
	err := reg.Register(metrics.NewBreakerCollector(func() []breaker.Snapshot {
		return []breaker.Snapshot{{Name: "llm_api", State: breaker.Open, FailureCount: 3}}
	}))
	if err != nil {
		fmt.Println(err)
		return
	}

	rec := httptest.NewRecorder()
	metrics.Handler(reg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for line := range strings.Lines(rec.Body.String()) {
		if !strings.HasPrefix(line, "#") {
			fmt.Print(line)
		}
	}
	// Output:
	// relay_breaker_failures{breaker="llm_api"} 3
	// relay_breaker_state{breaker="llm_api"} 2
}

func ExampleNewBulkheadCollector() {
	reg := prometheus.NewRegistry()
	// In the relay, the function returns the Stats of every bulkhead.
	err := reg.Register(metrics.NewBulkheadCollector(func() []bulkhead.Stats {
		return []bulkhead.Stats{{
			Name: "llm_worker", Busy: 7, Available: 0, Waiting: 3, Capacity: 7, Overflowing: 2,
			Checkouts: 120, RejectedFull: 4, RejectedRateLimited: 1,
		}}
	}))
	if err != nil {
		fmt.Println(err)
		return
	}

	rec := httptest.NewRecorder()
	metrics.Handler(reg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for line := range strings.Lines(rec.Body.String()) {
		if !strings.HasPrefix(line, "#") {
			fmt.Print(line)
		}
	}
	// Output:
	// relay_bulkhead_available{bulkhead="llm_worker"} 0
	// relay_bulkhead_busy{bulkhead="llm_worker"} 7
	// relay_bulkhead_capacity{bulkhead="llm_worker"} 7
	// relay_bulkhead_checkouts_total{bulkhead="llm_worker"} 120
	// relay_bulkhead_held_too_long{bulkhead="llm_worker"} 0
	// relay_bulkhead_overflowing{bulkhead="llm_worker"} 2
	// relay_bulkhead_rejected_total{bulkhead="llm_worker",reason="full"} 4
	// relay_bulkhead_rejected_total{bulkhead="llm_worker",reason="rate_limited"} 1
	// relay_bulkhead_rejected_total{bulkhead="llm_worker",reason="timeout"} 0
	// relay_bulkhead_waiting{bulkhead="llm_worker"} 3
}

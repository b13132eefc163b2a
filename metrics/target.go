package metrics

import "github.com/prometheus/client_golang/prometheus"

// Classes of a downstream response, the class label of
// relay_downstream_responses_total.
const (
	Class2xx   = "2xx"
	Class3xx   = "3xx"
	Class4xx   = "4xx"
	Class5xx   = "5xx"
	ClassError = "error"
)

// TargetMetrics are one downstream target's metrics, resolved once by
// Metrics.Target. Every field is set; updating them does not allocate.
type TargetMetrics struct {
	// RequestDuration observes seconds per request, each attempt apart
	// (relay_downstream_request_duration_seconds{target}).
	RequestDuration prometheus.Observer
	// Responses returns the counter of the response class of an HTTP
	// status code (relay_downstream_responses_total{target,class}). Codes
	// outside 200..599, 0 among them for "no response at all" (connection
	// refused, timeout), count as class "error".
	Responses func(code int) prometheus.Counter
	// BudgetExhausted counts retryable failures whose in-process retries
	// the target's retry budget refused
	// (relay_retry_budget_exhausted_total{target}).
	BudgetExhausted prometheus.Counter
}

// Target resolves the metrics of the downstream target named target.
func (m *Metrics) Target(target string) *TargetMetrics {
	m = m.orDetached()
	target = labelValue(target)
	r := &responseCounters{
		c2xx:  m.responses.WithLabelValues(target, Class2xx),
		c3xx:  m.responses.WithLabelValues(target, Class3xx),
		c4xx:  m.responses.WithLabelValues(target, Class4xx),
		c5xx:  m.responses.WithLabelValues(target, Class5xx),
		error: m.responses.WithLabelValues(target, ClassError),
	}
	return &TargetMetrics{
		RequestDuration: m.requestTime.WithLabelValues(target),
		Responses:       r.forCode,
		BudgetExhausted: m.budgetExhausted.WithLabelValues(target),
	}
}

// responseCounters are one target's response counters, one per class.
type responseCounters struct {
	c2xx, c3xx, c4xx, c5xx, error prometheus.Counter
}

func (r *responseCounters) forCode(code int) prometheus.Counter {
	switch {
	case code >= 200 && code < 300:
		return r.c2xx
	case code >= 300 && code < 400:
		return r.c3xx
	case code >= 400 && code < 500:
		return r.c4xx
	case code >= 500 && code < 600:
		return r.c5xx
	default:
		return r.error
	}
}

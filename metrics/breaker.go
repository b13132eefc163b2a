package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vsm-relay/relay/breaker"
)

// BreakerTransition counts one state change of the breaker named breaker
// (relay_breaker_transitions_total{breaker,from,to}); from and to are state
// names as breaker.State.String gives them. Transitions are rare, so this
// resolves its child per call.
func (m *Metrics) BreakerTransition(breaker, from, to string) {
	if m == nil {
		return
	}
	m.breakerTransitions.WithLabelValues(labelValue(breaker), labelValue(from), labelValue(to)).Inc()
}

// breakerCollector exposes breakers' state at scrape time.
type breakerCollector struct {
	snapshots func() []breaker.Snapshot
	state     *prometheus.Desc
	failures  *prometheus.Desc
}

// NewBreakerCollector returns a collector that calls snapshots at every
// scrape and exposes, per breaker:
//
//	relay_breaker_state{breaker}     0 closed, 1 half_open, 2 open
//	relay_breaker_failures{breaker}  failures within the window
//
// snapshots must be safe to call from the scraping goroutine; a nil
// snapshots exposes no breakers. Register the collector on the same
// registerer as New.
func NewBreakerCollector(snapshots func() []breaker.Snapshot) prometheus.Collector {
	return &breakerCollector{
		snapshots: snapshots,
		state: prometheus.NewDesc(
			prometheus.BuildFQName(namespace, "breaker", "state"),
			"Circuit breaker state: 0 closed, 1 half_open, 2 open.",
			[]string{"breaker"}, nil),
		failures: prometheus.NewDesc(
			prometheus.BuildFQName(namespace, "breaker", "failures"),
			"Failures within the circuit breaker's window.",
			[]string{"breaker"}, nil),
	}
}

func (c *breakerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.state
	ch <- c.failures
}

func (c *breakerCollector) Collect(ch chan<- prometheus.Metric) {
	if c.snapshots == nil {
		return
	}
	for _, s := range c.snapshots() {
		ch <- constMetric(c.state, prometheus.GaugeValue, float64(s.State), s.Name)
		ch <- constMetric(c.failures, prometheus.GaugeValue, float64(s.FailureCount), s.Name)
	}
}

// constMetric is prometheus.MustNewConstMetric without the panic: a value
// that cannot be exposed (a label that is not UTF-8) becomes a collection
// error naming it, and the rest of the scrape goes on.
func constMetric(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) prometheus.Metric {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(d, err)
	}
	return m
}

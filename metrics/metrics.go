package metrics

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vsm-relay/relay/internal/promreg"
)

// namespace prefixes every metric of the relay.
const namespace = "relay"

// Buckets of the histograms, in seconds. They are functions rather than
// variables so that no caller can change another's buckets.

// taskDurationBuckets: a task's time from delivery to ack spans in-process
// retries with backoff, so it reaches far beyond one request.
func taskDurationBuckets() []float64 {
	return []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
}

// requestDurationBuckets: downstream requests run from a few milliseconds
// (a local service) to a minute (an LLM answering a long prompt).
func requestDurationBuckets() []float64 {
	return []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
}

// confirmBuckets: a broker confirms in about a millisecond when healthy;
// tens of seconds means it is blocked or flow-controlled.
func confirmBuckets() []float64 {
	return []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
}

// bulkheadWaitBuckets: most checkouts find a free slot at once; the long
// tail is bounded by the bulkhead's timeout.
func bulkheadWaitBuckets() []float64 {
	return []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
}

// Metrics are the relay's push metrics, registered by New. Hand out their
// children with Queue, Target, Outbound, Broker and BulkheadWait at setup;
// all methods are safe for concurrent use.
//
// A nil *Metrics is usable: it hands out working metrics that are registered
// nowhere, so a component under test can be built without a registry.
type Metrics struct {
	tasks       *prometheus.CounterVec
	taskRetries *prometheus.CounterVec
	inFlight    *prometheus.GaugeVec
	taskTime    *prometheus.HistogramVec
	queueInfo   *prometheus.GaugeVec
	infoMu      sync.Mutex
	infoTarget  map[string]string // the target of each queue's queueInfo series

	requestTime     *prometheus.HistogramVec
	responses       *prometheus.CounterVec
	budgetExhausted *prometheus.CounterVec
	recounted       *prometheus.CounterVec
	queueBacklog    *prometheus.GaugeVec

	outbound    *prometheus.CounterVec
	confirmTime *prometheus.HistogramVec

	bulkheadWait       *prometheus.HistogramVec
	breakerTransitions *prometheus.CounterVec

	reconnects     *prometheus.CounterVec
	connected      *prometheus.GaugeVec
	blocked        *prometheus.GaugeVec
	blockedSeconds *prometheus.CounterVec
	publishes      *prometheus.CounterVec
}

// New builds the relay's push metrics and registers them on reg. It fails,
// registering nothing, if any of them clashes with a collector already
// there (for example when New is called twice on one registry); the error
// wraps the registerer's own (prometheus.AlreadyRegisteredError among
// them).
func New(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("metrics: nil registerer")
	}
	m := build()
	if err := registerAll(reg, m.collectors()...); err != nil {
		return nil, err
	}
	return m, nil
}

// build makes the vectors without registering them.
func build() *Metrics {
	return &Metrics{
		infoTarget: map[string]string{},
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "tasks_total",
			Help: "Tasks finished, by outcome: replied (answered to reply_to), completed (answered, no reply_to), dead_lettered, redelivered (sent to a delay queue) or requeued (given back to the broker untouched).",
		}, []string{"queue", "outcome"}),
		taskRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "task_retries_total",
			Help: "In-process retries of tasks' downstream calls.",
		}, []string{"queue"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "tasks_in_flight",
			Help: "Tasks delivered and not yet acked, nacked or requeued.",
		}, []string{"queue"}),
		taskTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "task_duration_seconds",
			Help:    "Time from a task's delivery to its ack.",
			Buckets: taskDurationBuckets(),
		}, []string{"queue"}),
		queueInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "work_queue_info",
			Help: "Always 1: the downstream target each work queue sends its tasks to.",
		}, []string{"queue", "target"}),

		requestTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "downstream", Name: "request_duration_seconds",
			Help:    "Duration of single downstream requests, each attempt apart.",
			Buckets: requestDurationBuckets(),
		}, []string{"target"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "downstream", Name: "responses_total",
			Help: "Downstream responses by status class (2xx, 3xx, 4xx, 5xx), or error when no response came.",
		}, []string{"target", "class"}),
		budgetExhausted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "retry_budget_exhausted_total",
			Help: "Retryable failures that skipped their in-process retries because the target's retry budget was spent (the task took its next redelivery step).",
		}, []string{"target"}),
		recounted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "redeliveries_total",
			Help: "Deliveries that came again after an earlier delivery ended without an outcome (the relay crashed or lost its channel); each counts towards amqp.delivery_limit.",
		}, []string{"queue"}),
		queueBacklog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "queue_backlog",
			Help: "A consumed queue's ready messages as the relay last read them, and 0 while its intake is held by an open breaker: the number to autoscale on.",
		}, []string{"queue"}),

		outbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "outbound", Name: "messages_total",
			Help: "Outbound messages by outcome: published (confirmed), returned (unroutable, then dead-lettered), dead_lettered (refused), requeued (given back to the broker); nacked counts publishes the destination refused.",
		}, []string{"queue", "outcome"}),
		confirmTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "outbound", Name: "confirm_seconds",
			Help:    "Time from publishing an outbound message to the destination broker's confirm.",
			Buckets: confirmBuckets(),
		}, []string{"queue"}),

		bulkheadWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "bulkhead", Name: "wait_seconds",
			Help:    "Time callers waited for a bulkhead slot, rejected waits included.",
			Buckets: bulkheadWaitBuckets(),
		}, []string{"bulkhead"}),
		breakerTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "breaker", Name: "transitions_total",
			Help: "Circuit breaker state changes.",
		}, []string{"breaker", "from", "to"}),

		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "amqp", Name: "reconnects_total",
			Help: "Broker connections re-established after a loss.",
		}, []string{"connection"}),
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "amqp", Name: "connected",
			Help: "1 while the broker connection is open, else 0.",
		}, []string{"connection"}),
		blocked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "amqp", Name: "blocked",
			Help: "1 while the broker blocks publishing on the connection (resource alarm), else 0.",
		}, []string{"connection"}),
		blockedSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "amqp", Name: "blocked_seconds_total",
			Help: "Time the broker has blocked publishing on the connection.",
		}, []string{"connection"}),
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "amqp", Name: "publishes_total",
			Help: "Publisher confirms by outcome: ack, nack, returned (unroutable) or lost (connection closed before the confirm).",
		}, []string{"connection", "outcome"}),
	}
}

// named pairs a collector with the metric name that error messages give.
type named struct {
	name string
	c    prometheus.Collector
}

func (m *Metrics) collectors() []named {
	return []named{
		{"relay_tasks_total", m.tasks},
		{"relay_task_retries_total", m.taskRetries},
		{"relay_tasks_in_flight", m.inFlight},
		{"relay_task_duration_seconds", m.taskTime},
		{"relay_work_queue_info", m.queueInfo},
		{"relay_downstream_request_duration_seconds", m.requestTime},
		{"relay_downstream_responses_total", m.responses},
		{"relay_retry_budget_exhausted_total", m.budgetExhausted},
		{"relay_queue_backlog", m.queueBacklog},
		{"relay_redeliveries_total", m.recounted},
		{"relay_outbound_messages_total", m.outbound},
		{"relay_outbound_confirm_seconds", m.confirmTime},
		{"relay_bulkhead_wait_seconds", m.bulkheadWait},
		{"relay_breaker_transitions_total", m.breakerTransitions},
		{"relay_amqp_reconnects_total", m.reconnects},
		{"relay_amqp_connected", m.connected},
		{"relay_amqp_blocked", m.blocked},
		{"relay_amqp_blocked_seconds_total", m.blockedSeconds},
		{"relay_amqp_publishes_total", m.publishes},
	}
}

// orDetached returns m, or for a nil m fresh metrics registered nowhere.
func (m *Metrics) orDetached() *Metrics {
	if m == nil {
		return build()
	}
	return m
}

// registerAll registers cs on reg, all or none (see promreg), naming the
// metric that clashed.
func registerAll(reg prometheus.Registerer, cs ...named) error {
	collectors := make([]prometheus.Collector, len(cs))
	for i, n := range cs {
		collectors[i] = n.c
	}
	if i, err := promreg.RegisterAll(reg, collectors...); err != nil {
		return fmt.Errorf("metrics: register %s: %w", cs[i].name, err)
	}
	return nil
}

// labelValue makes v a valid label value. WithLabelValues panics on invalid
// UTF-8, and names reach here from configuration and the broker; a mangled
// byte in a label is better than a crashed relay.
func labelValue(v string) string {
	return strings.ToValidUTF8(v, "\uFFFD")
}

// QueueBacklog returns the relay_queue_backlog gauge of queue.
func (m *Metrics) QueueBacklog(queue string) prometheus.Gauge {
	m = m.orDetached()
	return m.queueBacklog.WithLabelValues(labelValue(queue))
}

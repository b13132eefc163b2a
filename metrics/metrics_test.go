package metrics

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
)

// newTest returns Metrics registered on a fresh registry.
func newTest(t testing.TB) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m, reg
}

// touchAll resolves a child of every vector, so that every metric New
// registers shows in a scrape.
func touchAll(m *Metrics) {
	m.Queue("vsm.tasks.echo", "echo")
	m.Target("echo")
	m.Outbound("vsm.outbound")
	m.BulkheadWait("api_agent")
	m.BreakerTransition("llm_api", "closed", "open")
	m.Broker("consume")
	m.QueueBacklog("vsm.tasks.echo")
}

// family is what a scrape says of one metric family: its type and the
// label names of its series.
type family struct {
	typ    dto.MetricType
	labels string
}

func gatherFamilies(t *testing.T, g prometheus.Gatherer) map[string]family {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	got := make(map[string]family, len(mfs))
	for _, mf := range mfs {
		var names []string
		for _, lp := range mf.GetMetric()[0].GetLabel() {
			names = append(names, lp.GetName())
		}
		got[mf.GetName()] = family{mf.GetType(), strings.Join(names, ",")}
	}
	return got
}

func TestNewRegistersEveryNameWithItsLabels(t *testing.T) {
	m, reg := newTest(t)
	touchAll(m)

	// Label names are listed sorted, as a scrape gives them.
	want := map[string]family{
		"relay_tasks_total":                         {dto.MetricType_COUNTER, "outcome,queue"},
		"relay_task_retries_total":                  {dto.MetricType_COUNTER, "queue"},
		"relay_tasks_in_flight":                     {dto.MetricType_GAUGE, "queue"},
		"relay_task_duration_seconds":               {dto.MetricType_HISTOGRAM, "queue"},
		"relay_work_queue_info":                     {dto.MetricType_GAUGE, "queue,target"},
		"relay_downstream_request_duration_seconds": {dto.MetricType_HISTOGRAM, "target"},
		"relay_downstream_responses_total":          {dto.MetricType_COUNTER, "class,target"},
		"relay_retry_budget_exhausted_total":        {dto.MetricType_COUNTER, "target"},
		"relay_queue_backlog":                       {dto.MetricType_GAUGE, "queue"},
		"relay_redeliveries_total":                  {dto.MetricType_COUNTER, "queue"},
		"relay_outbound_messages_total":             {dto.MetricType_COUNTER, "outcome,queue"},
		"relay_outbound_confirm_seconds":            {dto.MetricType_HISTOGRAM, "queue"},
		"relay_bulkhead_wait_seconds":               {dto.MetricType_HISTOGRAM, "bulkhead"},
		"relay_breaker_transitions_total":           {dto.MetricType_COUNTER, "breaker,from,to"},
		"relay_amqp_reconnects_total":               {dto.MetricType_COUNTER, "connection"},
		"relay_amqp_connected":                      {dto.MetricType_GAUGE, "connection"},
		"relay_amqp_blocked":                        {dto.MetricType_GAUGE, "connection"},
		"relay_amqp_blocked_seconds_total":          {dto.MetricType_COUNTER, "connection"},
		"relay_amqp_publishes_total":                {dto.MetricType_COUNTER, "connection,outcome"},
	}
	got := gatherFamilies(t, reg)
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: not registered", name)
			continue
		}
		if g != w {
			t.Errorf("%s: got type %v labels {%s}, want type %v labels {%s}", name, g.typ, g.labels, w.typ, w.labels)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: registered but not expected", name)
		}
	}
	// The names in registration errors must be the real ones.
	var inErrors []string
	for _, n := range m.collectors() {
		inErrors = append(inErrors, n.name)
	}
	for name := range want {
		if !slices.Contains(inErrors, name) {
			t.Errorf("%s: missing from the names registration errors give", name)
		}
	}
	if len(inErrors) != len(want) {
		t.Errorf("registration error names: got %d, want %d", len(inErrors), len(want))
	}
}

func TestNewDoesNotRegisterAlgedonicSignals(t *testing.T) {
	m, reg := newTest(t)
	touchAll(m)
	if _, ok := gatherFamilies(t, reg)["relay_algedonic_signals_total"]; ok {
		t.Fatal("relay_algedonic_signals_total registered here; it belongs to the algedonic package")
	}
}

func TestNewPassesLint(t *testing.T) {
	m, reg := newTest(t)
	touchAll(m)
	lint(t, reg)
}

// lint reports what promlint finds wrong with g's metrics: names, units,
// counter suffixes, help.
func lint(t *testing.T, g prometheus.Gatherer) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatalf("Lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestNewTwiceOnOneRegistryIsAnError(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(reg); err != nil {
		t.Fatalf("first New: %v", err)
	}
	m, err := New(reg)
	if err == nil {
		t.Fatal("second New: got nil error, want one")
	}
	if m != nil {
		t.Errorf("second New: got %v, want nil Metrics with the error", m)
	}
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("second New: got %v, want it to wrap prometheus.AlreadyRegisteredError", err)
	}
	if !strings.Contains(err.Error(), "relay_tasks_total") {
		t.Errorf("second New: error %q does not name the metric", err)
	}
}

func TestNewRegistersNothingWhenOneMetricClashes(t *testing.T) {
	reg := prometheus.NewRegistry()
	// A metric late in New's list, already registered by another
	// collector: the metrics New registered before it must be taken back.
	// (Same help and labels, because a registry remembers the label names
	// of a name even after Unregister.)
	clash := build().connected
	clash.WithLabelValues("other").Set(1)
	if err := reg.Register(clash); err != nil {
		t.Fatal(err)
	}
	if _, err := New(reg); err == nil || !strings.Contains(err.Error(), "relay_amqp_connected") {
		t.Fatalf("New: got error %v, want one naming relay_amqp_connected", err)
	}
	if got := gatherFamilies(t, reg); len(got) != 1 {
		t.Fatalf("after failed New: got families %v, want only the clashing one", got)
	}
	reg.Unregister(clash)
	m, err := New(reg)
	if err != nil {
		t.Fatalf("New after resolving the clash: %v", err)
	}
	touchAll(m)
}

func TestNewWithNilRegistererIsAnError(t *testing.T) {
	if m, err := New(nil); err == nil || m != nil {
		t.Fatalf("New(nil): got %v, %v; want nil and an error", m, err)
	}
}

func TestNilMetricsHandsOutWorkingUnregisteredMetrics(t *testing.T) {
	var m *Metrics
	q := m.Queue("q", "t")
	q.Replied.Inc()
	q.InFlight.Set(3)
	tm := m.Target("t")
	tm.Responses(200).Inc()
	tm.RequestDuration.Observe(0.1)
	o := m.Outbound("o")
	o.Published.Inc()
	m.BulkheadWait("b").Observe(0.01)
	m.BreakerTransition("b", "closed", "open")
	b := m.Broker("consume")
	b.PublishConfirms(ConfirmAck).Inc()

	for name, got := range map[string]float64{
		"Replied":          testutil.ToFloat64(q.Replied),
		"InFlight":         testutil.ToFloat64(q.InFlight),
		"Responses(200)":   testutil.ToFloat64(tm.Responses(200)),
		"Published":        testutil.ToFloat64(o.Published),
		"PublishConfirms":  testutil.ToFloat64(b.PublishConfirms(ConfirmAck)),
		"Responses(500)":   testutil.ToFloat64(tm.Responses(500)),
		"Broker.Connected": testutil.ToFloat64(b.Connected),
	} {
		want := 1.0
		switch name {
		case "InFlight":
			want = 3
		case "Responses(500)", "Broker.Connected":
			want = 0
		}
		if got != want {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
}

func TestInvalidUTF8NamesDoNotPanic(t *testing.T) {
	m, reg := newTest(t)
	m.Queue("bad\xffqueue", "t\xfe").Replied.Inc()
	m.BreakerTransition("b\xff", "closed", "open")
	m.Broker("c").PublishConfirms("odd\xff").Inc()

	want := `
# HELP relay_tasks_total Tasks finished, by outcome: replied (answered to reply_to), completed (answered, no reply_to), dead_lettered, redelivered (sent to a delay queue) or requeued (given back to the broker untouched).
# TYPE relay_tasks_total counter
relay_tasks_total{outcome="completed",queue="bad` + "\uFFFD" + `queue"} 0
relay_tasks_total{outcome="dead_lettered",queue="bad` + "\uFFFD" + `queue"} 0
relay_tasks_total{outcome="redelivered",queue="bad` + "\uFFFD" + `queue"} 0
relay_tasks_total{outcome="replied",queue="bad` + "\uFFFD" + `queue"} 1
relay_tasks_total{outcome="requeued",queue="bad` + "\uFFFD" + `queue"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "relay_tasks_total"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(m.breakerTransitions.WithLabelValues("b\uFFFD", "closed", "open")); got != 1 {
		t.Errorf("transition with a mangled name: got %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.publishes.WithLabelValues("c", "odd\uFFFD")); got != 1 {
		t.Errorf("confirm with a mangled outcome: got %v, want 1", got)
	}
}

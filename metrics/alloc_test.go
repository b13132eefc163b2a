package metrics

import (
	"testing"
)

func TestHotPathsDoNotAllocate(t *testing.T) {
	m, _ := newTest(t)
	q := m.Queue("vsm.tasks.echo", "echo")
	tm := m.Target("echo")
	o := m.Outbound("vsm.outbound")
	b := m.Broker("publish")
	w := m.BulkheadWait("api_agent")

	tests := []struct {
		name string
		f    func()
	}{
		{"QueueMetrics.Replied.Inc", func() { q.Replied.Inc() }},
		{"QueueMetrics.InFlight.Inc", func() { q.InFlight.Inc() }},
		{"QueueMetrics.Duration.Observe", func() { q.Duration.Observe(0.2) }},
		{"TargetMetrics.Responses(503).Inc", func() { tm.Responses(503).Inc() }},
		{"TargetMetrics.Responses(0).Inc", func() { tm.Responses(0).Inc() }},
		{"TargetMetrics.RequestDuration.Observe", func() { tm.RequestDuration.Observe(0.05) }},
		{"OutboundMetrics.Published.Inc", func() { o.Published.Inc() }},
		{"OutboundMetrics.ConfirmLatency.Observe", func() { o.ConfirmLatency.Observe(0.002) }},
		{"BrokerMetrics.PublishConfirms(ack).Inc", func() { b.PublishConfirms(ConfirmAck).Inc() }},
		{"BulkheadWait.Observe", func() { w.Observe(0.0003) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := testing.AllocsPerRun(1000, tt.f); got != 0 {
				t.Errorf("got %v allocations per call, want 0", got)
			}
		})
	}
}

// oneTask is the metric work of one successful task: in flight, one
// downstream request answered 200, replied, settled.
func oneTask(q *QueueMetrics, tm *TargetMetrics) {
	q.InFlight.Inc()
	tm.RequestDuration.Observe(0.042)
	tm.Responses(200).Inc()
	q.Replied.Inc()
	q.Duration.Observe(0.05)
	q.InFlight.Dec()
}

// BenchmarkQueueMetricsHotPath is oneTask's cost.
func BenchmarkQueueMetricsHotPath(b *testing.B) {
	m, _ := newTest(b)
	q := m.Queue("vsm.tasks.echo", "echo")
	tm := m.Target("echo")
	b.ReportAllocs()
	for b.Loop() {
		oneTask(q, tm)
	}
}

// BenchmarkQueueMetricsHotPathParallel is the same under contention, as
// with many consumers on one queue.
func BenchmarkQueueMetricsHotPathParallel(b *testing.B) {
	m, _ := newTest(b)
	q := m.Queue("vsm.tasks.echo", "echo")
	tm := m.Target("echo")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			oneTask(q, tm)
		}
	})
}

// BenchmarkWithLabelValuesPerTask is what resolving children per task
// would cost instead, for comparison with BenchmarkQueueMetricsHotPath.
func BenchmarkWithLabelValuesPerTask(b *testing.B) {
	m, _ := newTest(b)
	b.ReportAllocs()
	for b.Loop() {
		m.inFlight.WithLabelValues("vsm.tasks.echo").Inc()
		m.requestTime.WithLabelValues("echo").Observe(0.042)
		m.responses.WithLabelValues("echo", Class2xx).Inc()
		m.tasks.WithLabelValues("vsm.tasks.echo", TaskReplied).Inc()
		m.taskTime.WithLabelValues("vsm.tasks.echo").Observe(0.05)
		m.inFlight.WithLabelValues("vsm.tasks.echo").Dec()
	}
}

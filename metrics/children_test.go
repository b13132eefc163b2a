package metrics

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestQueueCountsEachOutcomeUnderItsLabel(t *testing.T) {
	m, reg := newTest(t)
	q := m.Queue("vsm.tasks.echo", "echo")
	other := m.Queue("vsm.tasks.llm", "llm")
	q.Replied.Add(3)
	q.DeadLettered.Add(2)
	q.Redelivered.Inc()
	q.Requeued.Add(4)
	q.Retries.Add(5)
	q.InFlight.Inc()
	q.InFlight.Inc()
	q.InFlight.Dec()
	other.Replied.Inc()

	want := `
# HELP relay_tasks_total Tasks finished, by outcome: replied (answered to reply_to), completed (answered, no reply_to), dead_lettered, redelivered (sent to a delay queue) or requeued (given back to the broker untouched).
# TYPE relay_tasks_total counter
relay_tasks_total{outcome="completed",queue="vsm.tasks.echo"} 0
relay_tasks_total{outcome="dead_lettered",queue="vsm.tasks.echo"} 2
relay_tasks_total{outcome="redelivered",queue="vsm.tasks.echo"} 1
relay_tasks_total{outcome="replied",queue="vsm.tasks.echo"} 3
relay_tasks_total{outcome="requeued",queue="vsm.tasks.echo"} 4
relay_tasks_total{outcome="completed",queue="vsm.tasks.llm"} 0
relay_tasks_total{outcome="dead_lettered",queue="vsm.tasks.llm"} 0
relay_tasks_total{outcome="redelivered",queue="vsm.tasks.llm"} 0
relay_tasks_total{outcome="replied",queue="vsm.tasks.llm"} 1
relay_tasks_total{outcome="requeued",queue="vsm.tasks.llm"} 0
# HELP relay_task_retries_total In-process retries of tasks' downstream calls.
# TYPE relay_task_retries_total counter
relay_task_retries_total{queue="vsm.tasks.echo"} 5
relay_task_retries_total{queue="vsm.tasks.llm"} 0
# HELP relay_tasks_in_flight Tasks delivered and not yet acked, nacked or requeued.
# TYPE relay_tasks_in_flight gauge
relay_tasks_in_flight{queue="vsm.tasks.echo"} 1
relay_tasks_in_flight{queue="vsm.tasks.llm"} 0
# HELP relay_work_queue_info Always 1: the downstream target each work queue sends its tasks to.
# TYPE relay_work_queue_info gauge
relay_work_queue_info{queue="vsm.tasks.echo",target="echo"} 1
relay_work_queue_info{queue="vsm.tasks.llm",target="llm"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"relay_tasks_total", "relay_task_retries_total", "relay_tasks_in_flight", "relay_work_queue_info"); err != nil {
		t.Error(err)
	}
}

func TestQueueTwiceSharesTheSameSeries(t *testing.T) {
	m, _ := newTest(t)
	m.Queue("q", "t").Replied.Inc()
	m.Queue("q", "t").Replied.Inc()
	if got := testutil.ToFloat64(m.Queue("q", "t").Replied); got != 2 {
		t.Fatalf("Replied after two Queue calls: got %v, want 2", got)
	}
}

func TestQueueDurationObservesIntoItsBuckets(t *testing.T) {
	m, reg := newTest(t)
	d := m.Queue("q", "t").Duration
	d.Observe(0.02)
	d.Observe(3)
	d.Observe(400)

	want := `
# HELP relay_task_duration_seconds Time from a task's delivery to its ack.
# TYPE relay_task_duration_seconds histogram
relay_task_duration_seconds_bucket{queue="q",le="0.01"} 0
relay_task_duration_seconds_bucket{queue="q",le="0.025"} 1
relay_task_duration_seconds_bucket{queue="q",le="0.05"} 1
relay_task_duration_seconds_bucket{queue="q",le="0.1"} 1
relay_task_duration_seconds_bucket{queue="q",le="0.25"} 1
relay_task_duration_seconds_bucket{queue="q",le="0.5"} 1
relay_task_duration_seconds_bucket{queue="q",le="1"} 1
relay_task_duration_seconds_bucket{queue="q",le="2.5"} 1
relay_task_duration_seconds_bucket{queue="q",le="5"} 2
relay_task_duration_seconds_bucket{queue="q",le="10"} 2
relay_task_duration_seconds_bucket{queue="q",le="30"} 2
relay_task_duration_seconds_bucket{queue="q",le="60"} 2
relay_task_duration_seconds_bucket{queue="q",le="120"} 2
relay_task_duration_seconds_bucket{queue="q",le="300"} 2
relay_task_duration_seconds_bucket{queue="q",le="+Inf"} 3
relay_task_duration_seconds_sum{queue="q"} 403.02
relay_task_duration_seconds_count{queue="q"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "relay_task_duration_seconds"); err != nil {
		t.Error(err)
	}
}

func TestTargetResponsesCountByClass(t *testing.T) {
	tests := []struct {
		code  int
		class string
	}{
		{200, Class2xx}, {204, Class2xx}, {299, Class2xx},
		{300, Class3xx}, {304, Class3xx}, {399, Class3xx},
		{400, Class4xx}, {404, Class4xx}, {429, Class4xx}, {499, Class4xx},
		{500, Class5xx}, {503, Class5xx}, {599, Class5xx},
		{0, ClassError}, {-1, ClassError}, {100, ClassError}, {199, ClassError}, {600, ClassError}, {999, ClassError},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			m, _ := newTest(t)
			tm := m.Target("echo")
			tm.Responses(tt.code).Inc()
			for _, class := range []string{Class2xx, Class3xx, Class4xx, Class5xx, ClassError} {
				want := 0.0
				if class == tt.class {
					want = 1
				}
				if got := testutil.ToFloat64(m.responses.WithLabelValues("echo", class)); got != want {
					t.Errorf("class %s: got %v, want %v", class, got, want)
				}
			}
		})
	}
}

func TestTargetExposesEveryClassAndTheRequestHistogram(t *testing.T) {
	m, reg := newTest(t)
	tm := m.Target("echo")
	tm.Responses(503).Add(2)
	tm.RequestDuration.Observe(0.004)
	tm.RequestDuration.Observe(61)

	want := `
# HELP relay_downstream_responses_total Downstream responses by status class (2xx, 3xx, 4xx, 5xx), or error when no response came.
# TYPE relay_downstream_responses_total counter
relay_downstream_responses_total{class="2xx",target="echo"} 0
relay_downstream_responses_total{class="3xx",target="echo"} 0
relay_downstream_responses_total{class="4xx",target="echo"} 0
relay_downstream_responses_total{class="5xx",target="echo"} 2
relay_downstream_responses_total{class="error",target="echo"} 0
# HELP relay_downstream_request_duration_seconds Duration of single downstream requests, each attempt apart.
# TYPE relay_downstream_request_duration_seconds histogram
relay_downstream_request_duration_seconds_bucket{target="echo",le="0.005"} 1
relay_downstream_request_duration_seconds_bucket{target="echo",le="0.01"} 1
relay_downstream_request_duration_seconds_bucket{target="echo",le="0.025"} 1
relay_downstream_request_duration_seconds_bucket{target="echo",le="0.05"} 1
relay_downstream_request_duration_seconds_bucket{target="echo",le="0.1"} 1
relay_downstream_request_duration_seconds_bucket{target="echo",le="0.25"} 1
relay_downstream_request_duration_seconds_bucket{target="echo",le="0.5"} 1
relay_downstream_request_duration_seconds_bucket{target="echo",le="1"} 1
relay_downstream_request_duration_seconds_bucket{target="echo",le="2.5"} 1
relay_downstream_request_duration_seconds_bucket{target="echo",le="5"} 1
relay_downstream_request_duration_seconds_bucket{target="echo",le="10"} 1
relay_downstream_request_duration_seconds_bucket{target="echo",le="30"} 1
relay_downstream_request_duration_seconds_bucket{target="echo",le="60"} 1
relay_downstream_request_duration_seconds_bucket{target="echo",le="+Inf"} 2
relay_downstream_request_duration_seconds_sum{target="echo"} 61.004
relay_downstream_request_duration_seconds_count{target="echo"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"relay_downstream_responses_total", "relay_downstream_request_duration_seconds"); err != nil {
		t.Error(err)
	}
}

func TestOutboundCountsEachOutcomeUnderItsLabel(t *testing.T) {
	m, reg := newTest(t)
	o := m.Outbound("vsm.outbound")
	o.Published.Add(7)
	o.Returned.Add(2)
	o.Nacked.Inc()
	o.DeadLettered.Add(3)
	o.ConfirmLatency.Observe(0.0005)

	want := `
# HELP relay_outbound_messages_total Outbound messages by outcome: published (confirmed), returned (unroutable, then dead-lettered), dead_lettered (refused), requeued (given back to the broker); nacked counts publishes the destination refused.
# TYPE relay_outbound_messages_total counter
relay_outbound_messages_total{outcome="dead_lettered",queue="vsm.outbound"} 3
relay_outbound_messages_total{outcome="nacked",queue="vsm.outbound"} 1
relay_outbound_messages_total{outcome="published",queue="vsm.outbound"} 7
relay_outbound_messages_total{outcome="requeued",queue="vsm.outbound"} 0
relay_outbound_messages_total{outcome="returned",queue="vsm.outbound"} 2
# HELP relay_outbound_confirm_seconds Time from publishing an outbound message to the destination broker's confirm.
# TYPE relay_outbound_confirm_seconds histogram
relay_outbound_confirm_seconds_bucket{queue="vsm.outbound",le="0.001"} 1
relay_outbound_confirm_seconds_bucket{queue="vsm.outbound",le="0.0025"} 1
relay_outbound_confirm_seconds_bucket{queue="vsm.outbound",le="0.005"} 1
relay_outbound_confirm_seconds_bucket{queue="vsm.outbound",le="0.01"} 1
relay_outbound_confirm_seconds_bucket{queue="vsm.outbound",le="0.025"} 1
relay_outbound_confirm_seconds_bucket{queue="vsm.outbound",le="0.05"} 1
relay_outbound_confirm_seconds_bucket{queue="vsm.outbound",le="0.1"} 1
relay_outbound_confirm_seconds_bucket{queue="vsm.outbound",le="0.25"} 1
relay_outbound_confirm_seconds_bucket{queue="vsm.outbound",le="0.5"} 1
relay_outbound_confirm_seconds_bucket{queue="vsm.outbound",le="1"} 1
relay_outbound_confirm_seconds_bucket{queue="vsm.outbound",le="2.5"} 1
relay_outbound_confirm_seconds_bucket{queue="vsm.outbound",le="5"} 1
relay_outbound_confirm_seconds_bucket{queue="vsm.outbound",le="10"} 1
relay_outbound_confirm_seconds_bucket{queue="vsm.outbound",le="30"} 1
relay_outbound_confirm_seconds_bucket{queue="vsm.outbound",le="+Inf"} 1
relay_outbound_confirm_seconds_sum{queue="vsm.outbound"} 0.0005
relay_outbound_confirm_seconds_count{queue="vsm.outbound"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "relay_outbound_messages_total", "relay_outbound_confirm_seconds"); err != nil {
		t.Error(err)
	}
}

func TestBulkheadWaitObservesIntoItsBuckets(t *testing.T) {
	m, reg := newTest(t)
	w := m.BulkheadWait("api_agent")
	w.Observe(0.00005)
	w.Observe(0.003)
	w.Observe(31)

	want := `
# HELP relay_bulkhead_wait_seconds Time callers waited for a bulkhead slot, rejected waits included.
# TYPE relay_bulkhead_wait_seconds histogram
relay_bulkhead_wait_seconds_bucket{bulkhead="api_agent",le="0.0001"} 1
relay_bulkhead_wait_seconds_bucket{bulkhead="api_agent",le="0.00025"} 1
relay_bulkhead_wait_seconds_bucket{bulkhead="api_agent",le="0.0005"} 1
relay_bulkhead_wait_seconds_bucket{bulkhead="api_agent",le="0.001"} 1
relay_bulkhead_wait_seconds_bucket{bulkhead="api_agent",le="0.0025"} 1
relay_bulkhead_wait_seconds_bucket{bulkhead="api_agent",le="0.005"} 2
relay_bulkhead_wait_seconds_bucket{bulkhead="api_agent",le="0.01"} 2
relay_bulkhead_wait_seconds_bucket{bulkhead="api_agent",le="0.025"} 2
relay_bulkhead_wait_seconds_bucket{bulkhead="api_agent",le="0.05"} 2
relay_bulkhead_wait_seconds_bucket{bulkhead="api_agent",le="0.1"} 2
relay_bulkhead_wait_seconds_bucket{bulkhead="api_agent",le="0.25"} 2
relay_bulkhead_wait_seconds_bucket{bulkhead="api_agent",le="0.5"} 2
relay_bulkhead_wait_seconds_bucket{bulkhead="api_agent",le="1"} 2
relay_bulkhead_wait_seconds_bucket{bulkhead="api_agent",le="2.5"} 2
relay_bulkhead_wait_seconds_bucket{bulkhead="api_agent",le="5"} 2
relay_bulkhead_wait_seconds_bucket{bulkhead="api_agent",le="10"} 2
relay_bulkhead_wait_seconds_bucket{bulkhead="api_agent",le="30"} 2
relay_bulkhead_wait_seconds_bucket{bulkhead="api_agent",le="+Inf"} 3
relay_bulkhead_wait_seconds_sum{bulkhead="api_agent"} 31.00305
relay_bulkhead_wait_seconds_count{bulkhead="api_agent"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "relay_bulkhead_wait_seconds"); err != nil {
		t.Error(err)
	}
}

func TestBreakerTransitionCountsEachPair(t *testing.T) {
	m, reg := newTest(t)
	m.BreakerTransition("llm_api", "closed", "open")
	m.BreakerTransition("llm_api", "open", "half_open")
	m.BreakerTransition("llm_api", "half_open", "open")
	m.BreakerTransition("llm_api", "open", "half_open")
	m.BreakerTransition("amqp", "closed", "open")

	want := `
# HELP relay_breaker_transitions_total Circuit breaker state changes.
# TYPE relay_breaker_transitions_total counter
relay_breaker_transitions_total{breaker="amqp",from="closed",to="open"} 1
relay_breaker_transitions_total{breaker="llm_api",from="closed",to="open"} 1
relay_breaker_transitions_total{breaker="llm_api",from="half_open",to="open"} 1
relay_breaker_transitions_total{breaker="llm_api",from="open",to="half_open"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "relay_breaker_transitions_total"); err != nil {
		t.Error(err)
	}
}

func TestBrokerMetrics(t *testing.T) {
	m, reg := newTest(t)
	b := m.Broker("consume")
	m.Broker("publish").Connected.Set(1)
	b.Reconnects.Add(2)
	b.Connected.Set(1)
	b.Blocked.Set(1)
	b.BlockedSeconds.Add(1.5)
	b.PublishConfirms(ConfirmAck).Add(10)
	b.PublishConfirms(ConfirmNack).Add(1)
	b.PublishConfirms(ConfirmReturned).Add(2)
	b.PublishConfirms(ConfirmLost).Add(3)
	b.PublishConfirms("expired").Inc()

	want := `
# HELP relay_amqp_reconnects_total Broker connections re-established after a loss.
# TYPE relay_amqp_reconnects_total counter
relay_amqp_reconnects_total{connection="consume"} 2
relay_amqp_reconnects_total{connection="publish"} 0
# HELP relay_amqp_connected 1 while the broker connection is open, else 0.
# TYPE relay_amqp_connected gauge
relay_amqp_connected{connection="consume"} 1
relay_amqp_connected{connection="publish"} 1
# HELP relay_amqp_blocked 1 while the broker blocks publishing on the connection (resource alarm), else 0.
# TYPE relay_amqp_blocked gauge
relay_amqp_blocked{connection="consume"} 1
relay_amqp_blocked{connection="publish"} 0
# HELP relay_amqp_blocked_seconds_total Time the broker has blocked publishing on the connection.
# TYPE relay_amqp_blocked_seconds_total counter
relay_amqp_blocked_seconds_total{connection="consume"} 1.5
relay_amqp_blocked_seconds_total{connection="publish"} 0
# HELP relay_amqp_publishes_total Publisher confirms by outcome: ack, nack, returned (unroutable) or lost (connection closed before the confirm).
# TYPE relay_amqp_publishes_total counter
relay_amqp_publishes_total{connection="consume",outcome="ack"} 10
relay_amqp_publishes_total{connection="consume",outcome="expired"} 1
relay_amqp_publishes_total{connection="consume",outcome="lost"} 3
relay_amqp_publishes_total{connection="consume",outcome="nack"} 1
relay_amqp_publishes_total{connection="consume",outcome="returned"} 2
relay_amqp_publishes_total{connection="publish",outcome="ack"} 0
relay_amqp_publishes_total{connection="publish",outcome="lost"} 0
relay_amqp_publishes_total{connection="publish",outcome="nack"} 0
relay_amqp_publishes_total{connection="publish",outcome="returned"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"relay_amqp_reconnects_total", "relay_amqp_connected", "relay_amqp_blocked",
		"relay_amqp_blocked_seconds_total", "relay_amqp_publishes_total"); err != nil {
		t.Error(err)
	}
}

func TestQueueWithAnotherTargetReplacesItsInfoSeries(t *testing.T) {
	m, reg := newTest(t)
	m.Queue("q", "old")
	m.Queue("other", "old")
	m.Queue("q", "new")
	want := `
# HELP relay_work_queue_info Always 1: the downstream target each work queue sends its tasks to.
# TYPE relay_work_queue_info gauge
relay_work_queue_info{queue="other",target="old"} 1
relay_work_queue_info{queue="q",target="new"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "relay_work_queue_info"); err != nil {
		t.Error(err)
	}
}

func TestForgetQueueDropsItsStateAndKeepsItsCounters(t *testing.T) {
	m, reg := newTest(t)
	gone, kept := m.Queue("gone", "t"), m.Queue("kept", "t")
	gone.Replied.Add(2)
	gone.InFlight.Inc()
	kept.InFlight.Inc()
	m.QueueBacklog("gone").Set(7)
	m.QueueBacklog("kept").Set(3)

	m.ForgetQueue("gone")
	gone.InFlight.Dec() // a drained task of the removed queue: detached, not shown
	want := `
# HELP relay_queue_backlog A consumed queue's ready messages as the relay last read them, and 0 while its intake is held by an open breaker: the number to autoscale on.
# TYPE relay_queue_backlog gauge
relay_queue_backlog{queue="kept"} 3
# HELP relay_tasks_in_flight Tasks delivered and not yet acked, nacked or requeued.
# TYPE relay_tasks_in_flight gauge
relay_tasks_in_flight{queue="kept"} 1
# HELP relay_work_queue_info Always 1: the downstream target each work queue sends its tasks to.
# TYPE relay_work_queue_info gauge
relay_work_queue_info{queue="kept",target="t"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"relay_queue_backlog", "relay_tasks_in_flight", "relay_work_queue_info"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(m.Queue("gone", "t").Replied); got != 2 {
		t.Errorf("the removed queue's replied counter = %v, want 2 (counters stay)", got)
	}
	if got := testutil.ToFloat64(m.Queue("gone", "t").InFlight); got != 0 {
		t.Errorf("a queue added again starts with %v in flight, want 0", got)
	}
	var nilMetrics *Metrics
	nilMetrics.ForgetQueue("gone") // usable, like every method of a nil *Metrics
}

package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/relay"
)

// workYAML is a configuration with one target at url and one work queue.
func workYAML(queue, url, breakerExtra, backoffExtra, redelivery string) string {
	return fmt.Sprintf(`breakers:
  defaults: {failure_threshold: 1000, success_threshold: 2, reset_timeout: 500ms, half_open_timeout: 5s, window_size: 60s, timeout: 5s}
  downstream: {%s}
bulkheads:
  pool: {size: 8, overflow: 2, timeout: 5s}
backoff:
  defaults: {initial: 10ms, max: 50ms, multiplier: 2, jitter: full, max_retries: 2}
  downstream: {%s}
targets:
  svc: {url: %q, timeout: 2s, breaker: downstream, bulkhead: pool, backoff: downstream, max_request_bytes: 4096}
work:
  - {queue: %s, target: svc, redelivery: [%s]}
outbound: []
`, breakerExtra, backoffExtra, url, queue, redelivery)
}

func TestTasksAnsweredWithBodiesAndHeaders(t *testing.T) {
	e := newEnv(t)
	ds := newDownstream(t, echo)
	q := e.name("it.work.ok")
	cfg := e.loadConfig(workYAML(q, ds.URL, "", "", "1s"))
	e.startRelay(cfg)
	rep := e.replyQueue()

	const n = 50
	e.publishMany(q, n, func(i int) amqp.Publishing {
		return amqp.Publishing{
			Body: []byte(fmt.Sprintf(`{"n":%d}`, i)), ContentType: "application/json",
			CorrelationId: fmt.Sprintf("corr-%d", i), MessageId: fmt.Sprintf("msg-%d", i), ReplyTo: rep.queue,
			Headers: amqp.Table{"traceparent": fmt.Sprintf("00-%032x-%016x-01", i+1, i+1), "tracestate": "vendor=x"},
		}
	})
	eventually(t, 20*time.Second, "50 replies", func() bool { return rep.count() == n })

	byCorr := map[string]amqp.Delivery{}
	for _, m := range rep.all() {
		byCorr[m.CorrelationId] = m
	}
	if len(byCorr) != n {
		t.Fatalf("%d distinct correlation ids in %d replies", len(byCorr), rep.count())
	}
	for i := 0; i < n; i++ {
		m, ok := byCorr[fmt.Sprintf("corr-%d", i)]
		if !ok {
			t.Fatalf("no reply for corr-%d", i)
		}
		if want := fmt.Sprintf(`{"n":%d}`, i); string(m.Body) != want {
			t.Errorf("reply %d body %q, want %q", i, m.Body, want)
		}
		if m.ContentType != "application/json" {
			t.Errorf("reply %d content type %q", i, m.ContentType)
		}
		if headerInt(m.Headers, relay.HeaderStatus) != 200 || m.Headers[relay.HeaderTarget] != "svc" || headerInt(m.Headers, relay.HeaderAttempts) != 1 {
			t.Errorf("reply %d headers %v", i, m.Headers)
		}
		if _, bad := m.Headers[relay.HeaderError]; bad {
			t.Errorf("successful reply %d carries %s", i, relay.HeaderError)
		}
		if tp := m.Headers["traceparent"]; tp != fmt.Sprintf("00-%032x-%016x-01", i+1, i+1) {
			t.Errorf("reply %d traceparent %v", i, tp)
		}
	}
	reqs := ds.requests()
	if len(reqs) != n {
		t.Fatalf("downstream saw %d requests, want %d", len(reqs), n)
	}
	for _, r := range reqs {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" ||
			!strings.HasPrefix(r.Header.Get("Idempotency-Key"), "msg-") || !strings.HasPrefix(r.Header.Get("X-Correlation-ID"), "corr-") ||
			!strings.HasPrefix(r.Header.Get("Traceparent"), "00-") || r.Header.Get("Tracestate") != "vendor=x" {
			t.Fatalf("downstream request lacks contract headers: %s %v", r.Method, r.Header)
		}
	}
	if msgs, _ := e.depth(q + ".dlq"); msgs != 0 {
		t.Fatalf("%d tasks dead-lettered", msgs)
	}
}

func TestClientErrorsDeadLetteredAtOnceWithErrorReplies(t *testing.T) {
	e := newEnv(t)
	ds := newDownstream(t, status(422))
	q := e.name("it.work.4xx")
	cfg := e.loadConfig(workYAML(q, ds.URL, "failure_threshold: 2", "", "1s"))
	run := e.startRelay(cfg)
	rep := e.replyQueue()

	const n = 10
	e.publishMany(q, n, func(i int) amqp.Publishing {
		return amqp.Publishing{Body: []byte("task"), CorrelationId: fmt.Sprint(i), ReplyTo: rep.queue, Headers: amqp.Table{"custom": "kept"}}
	})
	eventually(t, 20*time.Second, "10 error replies", func() bool { return rep.count() == n })
	eventually(t, 10*time.Second, "10 dead letters", func() bool { m, _ := e.depth(q + ".dlq"); return m == n })
	for _, m := range rep.all() {
		if headerInt(m.Headers, relay.HeaderStatus) != 422 || headerInt(m.Headers, relay.HeaderAttempts) != 1 ||
			!strings.Contains(fmt.Sprint(m.Headers[relay.HeaderError]), "HTTP 422") {
			t.Fatalf("error reply headers %v", m.Headers)
		}
	}
	for _, m := range e.take(q + ".dlq") {
		if string(m.Body) != "task" || m.Headers["custom"] != "kept" || headerInt(m.Headers, relay.HeaderStatus) != 422 ||
			!strings.Contains(fmt.Sprint(m.Headers[relay.HeaderError]), "HTTP 422 Unprocessable Entity from target svc") {
			t.Fatalf("dead letter lost its body or headers: %q %v", m.Body, m.Headers)
		}
	}
	if got := ds.hits.Load(); got != n {
		t.Fatalf("downstream hit %d times for %d permanent failures (a 4xx must not be retried)", got, n)
	}
	// A 4xx is not the downstream's fault: the breaker stays closed.
	if st := run.r.Breaker("downstream").State().String(); st != "closed" {
		t.Fatalf("breaker %s after only 4xx answers", st)
	}
}

func TestServerErrorsRetriedThenRedeliveredThenDeadLettered(t *testing.T) {
	e := newEnv(t)
	ds := newDownstream(t, status(503))
	q := e.name("it.work.5xx")
	cfg := e.loadConfig(workYAML(q, ds.URL, "", "max_retries: 2", "200ms, 300ms"))
	e.startRelay(cfg)
	rep := e.replyQueue()

	const n = 5
	e.publishMany(q, n, func(i int) amqp.Publishing {
		return amqp.Publishing{Body: []byte(fmt.Sprint(i)), CorrelationId: fmt.Sprint(i), ReplyTo: rep.queue}
	})
	eventually(t, 30*time.Second, "5 dead letters", func() bool { m, _ := e.depth(q + ".dlq"); return m == n })
	// 3 attempts (1 + 2 retries) per delivery, 3 deliveries (the first and
	// two delayed redeliveries).
	const perTask = 9
	eventually(t, 10*time.Second, "5 error replies", func() bool { return rep.count() == n })
	for _, m := range e.take(q + ".dlq") {
		if got := headerInt(m.Headers, relay.HeaderAttempts); got != perTask {
			t.Errorf("dead letter x-relay-attempts %d, want %d", got, perTask)
		}
		if headerInt(m.Headers, relay.HeaderStatus) != 503 {
			t.Errorf("dead letter status %v", m.Headers[relay.HeaderStatus])
		}
	}
	if got := ds.hits.Load(); got != n*perTask {
		t.Fatalf("downstream hit %d times, want %d", got, n*perTask)
	}
	if msgs, _ := e.depth(q); msgs != 0 {
		t.Fatalf("%d tasks left in the work queue", msgs)
	}
}

func TestOversizedTaskDeadLetteredWithoutCallingDownstream(t *testing.T) {
	e := newEnv(t)
	ds := newDownstream(t, echo)
	q := e.name("it.work.big")
	cfg := e.loadConfig(workYAML(q, ds.URL, "", "", "1s"))
	e.startRelay(cfg)
	e.publish(q, amqp.Publishing{Body: []byte(strings.Repeat("x", 5000))})
	e.publish(q, amqp.Publishing{Body: []byte("small")})
	eventually(t, 10*time.Second, "1 dead letter", func() bool { m, _ := e.depth(q + ".dlq"); return m == 1 })
	eventually(t, 10*time.Second, "the small task answered", func() bool { return ds.hits.Load() == 1 })
	dl := e.take(q + ".dlq")
	if !strings.Contains(fmt.Sprint(dl[0].Headers[relay.HeaderError]), "over target svc's limit of 4096 bytes") {
		t.Fatalf("reason %v", dl[0].Headers[relay.HeaderError])
	}
}

func TestIntakePausedWhileBreakerOpenAndResumedAfter(t *testing.T) {
	e := newEnv(t)
	ds := newDownstream(t, status(500))
	q := e.name("it.work.breaker")
	cfg := e.loadConfig(workYAML(q, ds.URL, "failure_threshold: 3, reset_timeout: 1s", "max_retries: 0", "30s"))
	run := e.startRelay(cfg)
	rep := e.replyQueue()

	const n = 40
	e.publishMany(q, n, func(i int) amqp.Publishing {
		return amqp.Publishing{Body: []byte(fmt.Sprint(i)), CorrelationId: fmt.Sprint(i), ReplyTo: rep.queue}
	})
	b := run.r.Breaker("downstream")
	eventually(t, 10*time.Second, "breaker open", func() bool { return b.Snapshot().State.String() == "open" })
	// While open: no consumer on the queue, tasks wait in the broker.
	eventually(t, 10*time.Second, "intake paused", func() bool {
		_, consumers := e.depth(q)
		return consumers == 0
	})
	hitsWhileOpen := ds.hits.Load()
	ds.set(echo)
	// It half-opens after reset_timeout, probes succeed, it closes and
	// every task is answered.
	eventually(t, 30*time.Second, "every task answered", func() bool {
		ok := 0
		for _, m := range rep.all() {
			if headerInt(m.Headers, relay.HeaderStatus) == 200 {
				ok++
			}
		}
		return ok == n-redeliveredCount(e, q)
	})
	if b.State().String() != "closed" {
		t.Fatalf("breaker %s after recovery", b.State())
	}
	if _, consumers := e.depth(q); consumers != 1 {
		t.Fatalf("%d consumers after recovery, want 1", consumers)
	}
	if m, _ := e.depth(q + ".dlq"); m != 0 {
		t.Fatalf("%d tasks dead-lettered while the breaker protected them", m)
	}
	t.Logf("downstream hits before recovery: %d of %d tasks; replies: %d", hitsWhileOpen, n, rep.count())
	if hitsWhileOpen > 3+int64(cfg.Work[0].Prefetch) {
		t.Fatalf("downstream was hit %d times although the breaker opened after 3 failures", hitsWhileOpen)
	}
}

// redeliveredCount counts tasks parked in the 30s delay queue (their
// failures opened the breaker); they come back later, not in this test.
func redeliveredCount(e *env, q string) int {
	m, _ := e.depth(q + ".delay.30s")
	return m
}

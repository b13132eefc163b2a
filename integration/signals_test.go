package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/relay"
)

// failing answers 503 and counts the answers.
func failing(n *atomic.Int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("down for the test"))
	}
}

// allAnswered waits for n replies, each a success.
func allAnswered(t *testing.T, rep *replies, n int) {
	t.Helper()
	eventually(t, 45*time.Second, fmt.Sprintf("%d replies", n), func() bool { return rep.count() >= n })
	for _, m := range rep.all() {
		if headerInt(m.Headers, relay.HeaderStatus) != 200 {
			t.Errorf("reply %s: %v", m.CorrelationId, m.Headers)
		}
	}
	seen := map[string]bool{}
	for _, m := range rep.all() {
		seen[m.CorrelationId] = true
	}
	if len(seen) != n || rep.count() != n {
		t.Fatalf("%d replies for %d distinct tasks, want %d", rep.count(), len(seen), n)
	}
}

func tasksFor(rep *replies) func(i int) amqp.Publishing {
	return func(i int) amqp.Publishing {
		return amqp.Publishing{Body: []byte(fmt.Sprint(i)), CorrelationId: fmt.Sprint(i), ReplyTo: rep.queue}
	}
}

// A downstream outage: the breaker opens once per opening with pain, the
// work queue keeps its tasks with no consumer, /health, /metrics and the
// health reports say so, and recovery brings pleasure and every answer.
func TestOutagePainHeldTasksHealthMetricsAndRecoveryPleasure(t *testing.T) {
	start := time.Now()
	e := newEnv(t)
	var fails atomic.Int64
	ds := newDownstream(t, failing(&fails))
	q := e.name("it.sig.outage")
	cfg := e.loadConfig(signalYAML(q, ds.URL, "failure_threshold: 3, reset_timeout: 6s",
		"{size: 32, overflow: 0, timeout: 5s}", "max_retries: 0", "", "1s, 2s, 3s"))
	ev := e.events(cfg)
	reports := healthReports(e, cfg)
	run := e.startRelay(cfg)
	rep := e.replyQueue()

	if _, h := getHealth(t, cfg, start, run); h.Overall != "healthy" || !h.AMQP.Connected || h.AMQP.Blocked {
		t.Fatalf("before the outage: %+v", h)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, _ := run.get(t, p); code != 200 {
			t.Fatalf("%s answered %d", p, code)
		}
	}
	if v := scrape(t, run).get(t, "relay_breaker_state", "breaker", "downstream"); v != 0 {
		t.Fatalf("relay_breaker_state %v before the outage", v)
	}

	const n = 30
	e.publishMany(q, n, tasksFor(rep))
	b := run.r.Breaker("downstream")
	eventually(t, 15*time.Second, "breaker open", func() bool { return b.State().String() == "open" })
	// The work queue holds every task, ready, with no consumer: the ones
	// that failed come back from the 1s delay queue and wait too.
	delays := []string{relay.DelayQueueName(q, time.Second), relay.DelayQueueName(q, 2*time.Second), relay.DelayQueueName(q, 3*time.Second)}
	eventually(t, 15*time.Second, "every task waiting in the work queue, no consumer", func() bool {
		ready, consumers := e.depth(q)
		for _, d := range delays {
			if m, _ := e.depth(d); m != 0 {
				return false
			}
		}
		return ready == n && consumers == 0
	})
	if st := b.State().String(); st != "open" {
		t.Fatalf("breaker %s before the checks of the outage: the machine is too slow for reset_timeout 6s", st)
	}
	failed := fails.Load()

	code, h := getHealth(t, cfg, start, run)
	cb := h.CircuitBreakers["downstream"]
	pool := h.Bulkheads["pool"]
	if code != 503 || h.Overall != "unhealthy" || !h.AMQP.Connected || h.AMQP.Blocked {
		t.Errorf("/health during the outage: %d %s amqp %+v", code, h.Overall, h.AMQP)
	}
	if cb.State != "open" || cb.FailureCount < 3 || cb.SuccessCount != 0 {
		t.Errorf("/health circuit_breakers.downstream %+v, want open with at least 3 failures", cb)
	}
	if pool.Available != 32 || pool.Busy != 0 || pool.Waiting != 0 || pool.Capacity != 32 || pool.Rejected != 0 {
		t.Errorf("/health bulkheads.pool %+v, want 32 available of 32", pool)
	}
	for _, want := range []string{"every target breaker is open (downstream)", "breaker downstream is open"} {
		if !slices.Contains(h.Reasons, want) {
			t.Errorf("/health reasons %q lack %q", h.Reasons, want)
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, _ := run.get(t, p); code != 200 {
			t.Errorf("%s answered %d during the outage (the relay is connected and consuming)", p, code)
		}
	}
	m := scrape(t, run)
	if v := m.get(t, "relay_breaker_state", "breaker", "downstream"); v != 2 {
		t.Errorf("relay_breaker_state{breaker=downstream} = %v while open, want 2", v)
	}
	if v := m.get(t, "relay_bulkhead_busy", "bulkhead", "pool"); v != 0 {
		t.Errorf("relay_bulkhead_busy{bulkhead=pool} = %v, want 0", v)
	}
	for _, reason := range []string{"full", "timeout", "rate_limited"} {
		if v := m.get(t, "relay_bulkhead_rejected_total", "bulkhead", "pool", "reason", reason); v != 0 {
			t.Errorf("relay_bulkhead_rejected_total{reason=%s} = %v, want 0", reason, v)
		}
	}
	if v := m.get(t, "relay_tasks_total", "queue", q, "outcome", "redelivered"); int64(v) != failed {
		t.Errorf("relay_tasks_total{outcome=redelivered} = %v, the downstream failed %d tasks", v, failed)
	}
	if v := m.get(t, "relay_health_status"); v != 2 {
		t.Errorf("relay_health_status = %v during the outage, want 2", v)
	}
	opens := m.sum("relay_breaker_transitions_total", "breaker", "downstream", "to", "open")
	if v := m.get(t, "relay_algedonic_signals_total", "signal", "pain", "source", "breaker"); v != opens || opens < 1 {
		t.Errorf("relay_algedonic_signals_total{pain,breaker} = %v for %v openings", v, opens)
	}
	// The periodic report says so too.
	eventually(t, 10*time.Second, "a health report of the outage", func() bool {
		for _, d := range reports.all() {
			r := parseHealth(t, cfg, start, string(d.Body))
			if r.Overall == "unhealthy" && r.CircuitBreakers["downstream"].State == "open" {
				return true
			}
		}
		return false
	})
	t.Logf("outage: %d downstream failures, %v openings, %d tasks held", failed, opens, n)

	ds.set(echo)
	allAnswered(t, rep, n)
	eventually(t, 10*time.Second, "breaker closed", func() bool { return b.State().String() == "closed" })
	eventually(t, 10*time.Second, "the last health event is healthy", healthyAgain(ev))
	m = settled(t, run, ev)
	if _, h := getHealth(t, cfg, start, run); h.Overall != "healthy" || h.CircuitBreakers["downstream"].State != "closed" {
		t.Errorf("/health after recovery: %s, breaker %s", h.Overall, h.CircuitBreakers["downstream"].State)
	}
	if v := m.get(t, "relay_breaker_state", "breaker", "downstream"); v != 0 {
		t.Errorf("relay_breaker_state{breaker=downstream} = %v after recovery, want 0", v)
	}
	if v := m.get(t, "relay_tasks_total", "queue", q, "outcome", "replied"); v != n {
		t.Errorf("relay_tasks_total{outcome=replied} = %v, want %d", v, n)
	}
	if v := m.get(t, "relay_tasks_total", "queue", q, "outcome", "dead_lettered"); v != 0 {
		t.Errorf("relay_tasks_total{outcome=dead_lettered} = %v, want 0", v)
	}
	if m, _ := e.depth(q + ".dlq"); m != 0 {
		t.Errorf("%d tasks dead-lettered", m)
	}

	evs := decodeSignals(t, cfg, start, ev.all())
	onlyKeys(t, evs, "breaker.downstream.open", "breaker.downstream.closed",
		"health.overall.unhealthy", "health.overall.degraded", "health.overall.healthy")
	opened := keyed(evs, "breaker.downstream.open")
	opens = m.sum("relay_breaker_transitions_total", "breaker", "downstream", "to", "open")
	if len(opened) != int(opens) || len(opened) < 1 {
		t.Errorf("%d breaker open events for %v openings", len(opened), opens)
	}
	for i, o := range opened {
		checkBreakerOpen(t, o)
		if o.Count != 1 {
			t.Errorf("breaker open count %d", o.Count)
		}
		if i == 0 && (o.Details["from"] != "closed" || !strings.Contains(o.Reason, "HTTP 503")) {
			t.Errorf("first opening: from %v, reason %q (want from closed, naming HTTP 503)", o.Details["from"], o.Reason)
		}
	}
	closed := keyed(evs, "breaker.downstream.closed")
	if len(closed) != 1 {
		t.Fatalf("%d breaker closed events, want 1", len(closed))
	}
	checkBreakerClosed(t, closed[0])
	lastOpen := slices.IndexFunc(evs, func(x signalEvent) bool {
		return x.Key == "breaker.downstream.open" && x.At.Equal(opened[len(opened)-1].At)
	})
	if slices.IndexFunc(evs, func(x signalEvent) bool { return x.Key == "breaker.downstream.closed" }) < lastOpen {
		t.Errorf("breaker closed event arrived before the last open event: %v", keysOf(evs))
	}
	if to := checkHealthEvents(t, evs); to["unhealthy"] < 1 {
		t.Errorf("no unhealthy health event: %v", healthTrail(evs))
	}
	checkSignalMetrics(t, m, evs)
	t.Logf("events: %d open, 1 closed, health %v", len(opened), healthTrail(keyedPrefix(evs, "health.")))
}

// healthyAgain reports whether the latest health event to arrive is
// healthy.
func healthyAgain(ev *replies) func() bool {
	return func() bool {
		all := ev.all()
		for i := len(all) - 1; i >= 0; i-- {
			if strings.HasPrefix(all[i].RoutingKey, "health.") {
				return all[i].RoutingKey == "health.overall.healthy"
			}
		}
		return false
	}
}

func keyedPrefix(evs []signalEvent, prefix string) []signalEvent {
	var out []signalEvent
	for _, ev := range evs {
		if strings.HasPrefix(ev.Key, prefix) {
			out = append(out, ev)
		}
	}
	return out
}

// A full pool's rejections come as few coalesced pain events whose counts
// add up to every rejection the bulkhead counted.
func TestPoolRejectionsCoalescedIntoCountedPain(t *testing.T) {
	start := time.Now()
	e := newEnv(t)
	ds := newDownstream(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		echo(w, r)
	})
	q := e.name("it.sig.pool")
	cfg := e.loadConfig(signalYAML(q, ds.URL, "",
		"{size: 2, overflow: 0, timeout: 1s, max_waiting: -1}",
		"initial: 20ms, max: 100ms, max_retries: 1000", ", concurrency: 10", "1s"))
	ev := e.events(cfg)
	run := e.startRelay(cfg)
	rep := e.replyQueue()

	const n = 20
	e.publishMany(q, n, tasksFor(rep))
	allAnswered(t, rep, n)

	var rejected uint64
	eventually(t, 15*time.Second, "rejected events adding up to the pool's rejections", func() bool {
		_, h := getHealth(t, cfg, start, run)
		rejected = h.Bulkheads["pool"].Rejected
		sum := 0
		for _, d := range ev.all() {
			if d.RoutingKey == "bulkhead.pool.rejected" {
				sum += decodeSignal(t, cfg, start, d).Count
			}
		}
		return uint64(sum) == rejected
	})
	if rejected == 0 {
		t.Fatal("the pool rejected nothing: the test did not fill it")
	}
	eventually(t, 10*time.Second, "the last health event is healthy", healthyAgain(ev))
	m := settled(t, run, ev)

	evs := decodeSignals(t, cfg, start, ev.all())
	onlyKeys(t, evs, "bulkhead.pool.rejected", "health.overall.degraded", "health.overall.healthy")
	rej := keyed(evs, "bulkhead.pool.rejected")
	total := 0
	for i, r := range rej {
		total += r.Count
		if r.Severity != "warning" || r.Reason != "full" || r.Name != "pool" {
			t.Errorf("rejected event %d: severity %s reason %q name %q", i, r.Severity, r.Reason, r.Name)
		}
		if i == 0 && r.Count != 1 {
			t.Errorf("the first rejection is sent at once with count 1, got %d", r.Count)
		}
		// One event per coalesce window (1s): the wire time has
		// millisecond precision.
		if i > 0 && r.At.Sub(rej[i-1].At) < cfg.Algedonic.Coalesce-time.Millisecond {
			t.Errorf("rejected events %d and %d only %s apart, within one coalesce window of %s", i-1, i, r.At.Sub(rej[i-1].At), cfg.Algedonic.Coalesce)
		}
	}
	if uint64(total) != rejected {
		t.Errorf("rejected events count %d rejections, the pool counted %d", total, rejected)
	}
	if v := m.get(t, "relay_bulkhead_rejected_total", "bulkhead", "pool", "reason", "full"); uint64(v) != rejected {
		t.Errorf("relay_bulkhead_rejected_total{reason=full} = %v, /health says %d", v, rejected)
	}
	if v := m.sum("relay_bulkhead_rejected_total", "bulkhead", "pool"); uint64(v) != rejected {
		t.Errorf("relay_bulkhead_rejected_total{bulkhead=pool} sums to %v, /health says %d", v, rejected)
	}
	if to := checkHealthEvents(t, evs); to["degraded"] < 1 || to["unhealthy"] != 0 {
		t.Errorf("health events %v: want degraded and never unhealthy", healthTrail(keyedPrefix(evs, "health.")))
	}
	checkSignalMetrics(t, m, evs)
	if v := m.get(t, "relay_tasks_total", "queue", q, "outcome", "replied"); v != n {
		t.Errorf("relay_tasks_total{outcome=replied} = %v, want %d", v, n)
	}
	t.Logf("%d rejections in %d events over %s", total, len(rej), rej[len(rej)-1].At.Sub(rej[0].At))
}

// Events raised while the relay's publishing connection is cut (and kept
// from coming back) reach the broker, in order, once it returns.
func TestSignalsRaisedWhileBrokerCutArriveAfterItReturns(t *testing.T) {
	start := time.Now()
	e := newEnv(t)
	ds := newDownstream(t, echo)
	q := e.name("it.sig.cut")
	proxy := newGateProxy(t, e.url)
	cfg := e.loadConfig(signalYAML(q, ds.URL, "failure_threshold: 3, reset_timeout: 5s",
		"{size: 32, overflow: 0, timeout: 5s}", "max_retries: 0", "", "1s, 2s, 3s"))
	cfg.AMQP.URL = proxy.url(e.url)
	ev := e.events(cfg)
	run := e.startRelay(cfg)
	rep := e.replyQueue()
	if got := proxy.forwarded(); got != 2 {
		t.Fatalf("%d connections through the proxy, want the publish and the consume connection", got)
	}
	if c := ev.count(); c != 0 {
		t.Fatalf("%d events before the cut", c)
	}

	// Keep the relay from reconnecting, then cut its publish connection:
	// through the broker when rabbitmqctl can, else at the proxy (the
	// publish connection is dialled first).
	proxy.hold()
	cutAt := time.Now()
	if path, why := rabbitmqctl(t, e.url); path != "" {
		if n := closeBrokerConnections(t, path, "relay "+cfg.Instance+" publish"); n != 1 {
			t.Fatalf("rabbitmqctl closed %d publish connections, want 1", n)
		}
		t.Logf("publish connection closed by the broker (rabbitmqctl close_connection) in %s", time.Since(cutAt).Round(time.Millisecond))
	} else {
		t.Logf("publish connection cut at the proxy: %s", why)
		proxy.cut(0)
	}
	eventually(t, 15*time.Second, "/readyz 503 while the publish connection is down", func() bool {
		code, _ := run.get(t, "/readyz")
		return code == 503
	})
	m := scrape(t, run)
	if m.get(t, "relay_amqp_connected", "connection", "publish") != 0 || m.get(t, "relay_amqp_connected", "connection", "consume") != 1 {
		t.Fatalf("relay_amqp_connected: publish %v, consume %v; want 0 and 1",
			m.get(t, "relay_amqp_connected", "connection", "publish"), m.get(t, "relay_amqp_connected", "connection", "consume"))
	}
	// Reading /health evaluates it: the unhealthy event is raised now.
	if code, h := getHealth(t, cfg, start, run); code != 503 || h.Overall != "unhealthy" || h.AMQP.Connected {
		t.Fatalf("/health while cut: %d %s amqp %+v", code, h.Overall, h.AMQP)
	}

	// Nothing is taken while nothing could be answered: tasks published
	// during the cut wait in the broker, with no consumer on their queue.
	const n = 10
	e.publishMany(q, n, tasksFor(rep))
	eventually(t, 15*time.Second, "intake held while the publish connection is down", func() bool {
		msgs, consumers := e.depth(q)
		return msgs == n && consumers == 0
	})
	if hits := ds.hits.Load(); hits != 0 {
		t.Fatalf("the downstream was called %d times while no answer could be published", hits)
	}
	// An operator opens the breaker while cut: its pain waits for the
	// broker with the loss and the unhealthy health.
	b := run.r.Breaker("downstream")
	b.ForceOpen()
	if v := scrape(t, run).get(t, "relay_algedonic_pending"); v < 3 {
		t.Errorf("relay_algedonic_pending = %v while cut, want at least lost, unhealthy and open", v)
	}
	if c := ev.count(); c != 0 {
		t.Fatalf("%d events arrived while the publish connection was cut", c)
	}
	releasedAt := time.Now()
	t.Logf("breaker open and %d events pending %s after the cut", int(scrape(t, run).get(t, "relay_algedonic_pending")), releasedAt.Sub(cutAt).Round(time.Millisecond))
	proxy.release()

	eventually(t, 15*time.Second, "relay ready again", run.r.Ready)
	eventually(t, 15*time.Second, "the restored event", func() bool {
		for _, d := range ev.all() {
			if d.RoutingKey == "amqp.broker.restored" {
				return true
			}
		}
		return false
	})
	b.Reset() // closes it: pleasure, and intake resumes
	allAnswered(t, rep, n)
	eventually(t, 15*time.Second, "breaker closed", func() bool { return b.State().String() == "closed" })
	eventually(t, 10*time.Second, "the last health event is healthy", healthyAgain(ev))
	m = settled(t, run, ev)

	evs := decodeSignals(t, cfg, start, ev.all())
	onlyKeys(t, evs, "amqp.broker.lost", "amqp.broker.restored", "breaker.downstream.open", "breaker.downstream.closed",
		"health.overall.unhealthy", "health.overall.degraded", "health.overall.healthy")
	idx := func(key string) int { return slices.IndexFunc(evs, func(x signalEvent) bool { return x.Key == key }) }
	lost, restored := keyed(evs, "amqp.broker.lost"), keyed(evs, "amqp.broker.restored")
	if len(lost) != 1 || len(restored) != 1 {
		t.Fatalf("%d lost and %d restored events, want one each", len(lost), len(restored))
	}
	l, r := lost[0], restored[0]
	ms := time.Millisecond
	if l.Severity != "critical" || l.Intensity != 1 || !strings.Contains(l.Reason, "publish connection") || l.At.Before(cutAt.Truncate(ms)) {
		t.Errorf("lost: %s %v %q at %s (cut at %s)", l.Severity, l.Intensity, l.Reason, l.At, cutAt)
	}
	down, _ := r.Details["downtime_seconds"].(float64)
	if r.Severity != "info" || r.Intensity < 0.5 || r.Intensity > 1 || r.At.Before(releasedAt.Truncate(ms)) ||
		down <= 0 || down > r.At.Sub(cutAt).Seconds()+0.01 {
		t.Errorf("restored: %s %v at %s, downtime %vs (cut at %s, released at %s)", r.Severity, r.Intensity, r.At, down, cutAt, releasedAt)
	}
	// Raised while cut: the lost event, then the breaker's opening (the
	// tasks were published after the loss was seen), and the health that
	// turned unhealthy (a check can see the loss a moment before the
	// lost event is raised), all before the restored one, in time and in
	// arrival order.
	firstOpen, firstUnhealthy, back := idx("breaker.downstream.open"), idx("health.overall.unhealthy"), idx("amqp.broker.restored")
	if firstOpen < 0 || firstUnhealthy < 0 {
		t.Fatalf("no open or unhealthy event: %v", keysOf(evs))
	}
	if idx("amqp.broker.lost") > firstOpen || firstOpen > back || firstUnhealthy > back {
		t.Errorf("arrival order %v: want lost, then open, and unhealthy, before restored", keysOf(evs))
	}
	for _, x := range []signalEvent{evs[firstOpen], evs[firstUnhealthy]} {
		if x.At.Before(cutAt.Truncate(ms)) || !x.At.Before(releasedAt) {
			t.Errorf("%s at %s: not raised while the connection was cut (%s to %s)", x.Key, x.At, cutAt, releasedAt)
		}
	}
	// Emit reads the clock before it queues, so two events raised at once
	// may be queued a moment out of time order; these are far apart.
	for i := 1; i < back; i++ {
		if evs[i].At.Before(evs[i-1].At.Add(-50 * ms)) {
			t.Errorf("buffered events out of order: %s at %s arrived after %s at %s", evs[i].Key, evs[i].At, evs[i-1].Key, evs[i-1].At)
		}
	}
	opened := keyed(evs, "breaker.downstream.open")
	if opens := m.sum("relay_breaker_transitions_total", "breaker", "downstream", "to", "open"); len(opened) != int(opens) {
		t.Errorf("%d open events for %v openings", len(opened), opens)
	}
	for _, o := range opened {
		checkBreakerOpen(t, o)
	}
	if c := keyed(evs, "breaker.downstream.closed"); len(c) != 1 {
		t.Errorf("%d closed events, want 1", len(c))
	}
	checkHealthEvents(t, evs)
	checkSignalMetrics(t, m, evs)
	if v := m.get(t, "relay_amqp_reconnects_total", "connection", "publish"); v != 1 {
		t.Errorf("relay_amqp_reconnects_total{connection=publish} = %v, want 1", v)
	}
	t.Logf("cut for %s; events in arrival order: %v", releasedAt.Sub(cutAt).Round(ms), keysOf(evs))
}

func keysOf(evs []signalEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Key
	}
	return out
}

// The health report goes to the health exchange every health.interval
// with routing key health.<instance>, in the shape of /health.
func TestHealthReportsPublishedEveryInterval(t *testing.T) {
	start := time.Now()
	e := newEnv(t)
	ds := newDownstream(t, echo)
	q := e.name("it.sig.reports")
	cfg := e.loadConfig(signalYAML(q, ds.URL, "", "{size: 4, overflow: 1, timeout: 5s}", "", "", "1s"))
	reports := healthReports(e, cfg)
	run := e.startRelay(cfg)

	const want = 5
	eventually(t, 20*time.Second, fmt.Sprintf("%d health reports", want), func() bool { return reports.count() >= want })
	_, fromHTTP := run.get(t, "/health")
	httpShape := jsonShape(t, fromHTTP)
	var ats []time.Time
	for i, d := range reports.all()[:want] {
		if d.Exchange != cfg.Health.Exchange || d.RoutingKey != "health."+algedonic.RoutingWord(cfg.Instance) || d.RoutingKey != "health."+cfg.Instance {
			t.Errorf("report %d via %s with key %q, want %s with health.%s", i, d.Exchange, d.RoutingKey, cfg.Health.Exchange, cfg.Instance)
		}
		if d.ContentType != "application/json" || d.DeliveryMode != amqp.Persistent {
			t.Errorf("report %d: content type %q, delivery mode %d", i, d.ContentType, d.DeliveryMode)
		}
		h := parseHealth(t, cfg, start, string(d.Body))
		if h.Overall != "healthy" || !h.AMQP.Connected || h.CircuitBreakers["downstream"].State != "closed" ||
			h.Bulkheads["pool"].Capacity != 5 || h.Bulkheads["pool"].Available != 5 {
			t.Errorf("report %d: %s", i, d.Body)
		}
		if shape := jsonShape(t, string(d.Body)); !slices.Equal(shape, httpShape) {
			t.Errorf("report %d has the fields\n%v\n/health has\n%v", i, shape, httpShape)
		}
		at, _ := time.Parse(time.RFC3339Nano, h.At)
		if i > 0 && !at.After(ats[i-1]) {
			t.Errorf("report %d at %s not after the one before (%s)", i, at, ats[i-1])
		}
		ats = append(ats, at)
	}
	// A ticker keeps the period on average even when one report is late.
	mean := ats[want-1].Sub(ats[0]) / (want - 1)
	if lo, hi := cfg.Health.Interval*7/10, cfg.Health.Interval*16/10; mean < lo || mean > hi {
		t.Errorf("reports %s apart on average, want about %s", mean, cfg.Health.Interval)
	}
	t.Logf("%d reports, %s apart on average", want, mean)
}

// jsonShape lists the paths of an object's fields (a breaker's or pool's
// own name replaced by *), sorted.
func jsonShape(t *testing.T, body string) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	var out []string
	var walk func(prefix string, v any, named bool)
	walk = func(prefix string, v any, named bool) {
		obj, ok := v.(map[string]any)
		if !ok {
			out = append(out, prefix)
			return
		}
		for k, c := range obj {
			name := k
			if named {
				name = "*"
			}
			walk(prefix+"."+name, c, prefix == "" && (k == "circuit_breakers" || k == "bulkheads"))
		}
	}
	walk("", v, false)
	slices.Sort(out)
	return slices.Compact(out)
}

// /health polled while the relay starts answers 503 until it runs, and
// the race detector sees no unsynchronised read of what Run sets up.
func TestHealthPolledWhileRelayStarts(t *testing.T) {
	e := newEnv(t)
	ds := newDownstream(t, echo)
	q := e.name("it.sig.startup")
	cfg := e.loadConfig(signalYAML(q, ds.URL, "", "{size: 4, overflow: 1, timeout: 5s}", "", "", "1s"))
	// The address must be known before Run listens; a port just freed is
	// good enough for a test.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg.HTTP.Listen = addr
	r, err := relay.New(cfg, relay.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	codes := map[int]int{}
	deadline := time.Now().Add(15 * time.Second)
	for !r.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("relay not ready within 15s")
		}
		if resp, err := http.Get("http://" + addr + "/health"); err == nil {
			codes[resp.StatusCode]++
			resp.Body.Close()
		}
		time.Sleep(2 * time.Millisecond)
	}
	for code := range codes {
		if code != 503 && code != 200 {
			t.Errorf("/health answered %d while starting", code)
		}
	}
	resp, err := http.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/health answered %d once ready", resp.StatusCode)
	}
	t.Logf("answers while starting: %v", codes)
}

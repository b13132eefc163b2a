package integration

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/relay"
)

// taskNumber is the number at the end of a ledger id.
func taskNumber(id string) int {
	n, err := strconv.Atoi(id[strings.LastIndex(id, "-")+1:])
	if err != nil {
		return -1
	}
	return n
}

// hangUp drops the connection without an answer, as a crashed
// downstream does.
func hangUp(w http.ResponseWriter, _ *http.Request) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	c, _, err := hj.Hijack()
	if err == nil {
		c.Close()
	}
}

// TestFaultsDownstreamOutage takes the downstream away (connections
// dropped unanswered) for a few seconds under load: the breaker opens,
// intake pauses, tasks wait in the broker; then it comes back and
// everything is answered.
func TestFaultsDownstreamOutage(t *testing.T) {
	e := newEnv(t)
	in := e.inspector()
	var down atomic.Bool
	ds := newDownstream(t, func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			hangUp(w, r)
			return
		}
		paced(5*time.Millisecond)(w, r)
	})
	q := e.name("it.faults.outage")
	cfg := e.loadConfig(faultConfig{
		URL: ds.URL, Queues: []string{q},
		Breaker: "failure_threshold: 5, reset_timeout: 500ms", Backoff: "max_retries: 1", Redelivery: "500ms, 1s, 2s",
	}.yaml())
	run := e.startRelay(cfg)
	events := e.events(cfg)
	l := e.ledger("downstream outage of 3s under load (connections dropped unanswered)", in)
	const n = 200
	wait := l.publishInBackground(e.url, q, 0, n, 10*time.Millisecond, func(i int) amqp.Publishing {
		return l.task(i, []byte(fmt.Sprint("task ", i)))
	})
	waitProgress(t, l, 0, 30)
	down.Store(true)
	b := run.r.Breaker("downstream")
	eventually(t, 20*time.Second, "breaker open", func() bool { return b.State().String() == "open" })
	eventually(t, 20*time.Second, "intake paused", func() bool { _, c := in.depth(q); return c == 0 })
	time.Sleep(3 * time.Second) // the outage: half-open probes keep failing
	down.Store(false)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	tl := l.settle(90*time.Second, deadLetterQueues(cfg), settledQueues(cfg)...)
	eventually(t, 20*time.Second, "breaker closed", func() bool { return b.State().String() == "closed" })
	if _, c := in.depth(q); c != 1 {
		t.Fatalf("%d consumers after recovery, want 1", c)
	}
	eventually(t, 20*time.Second, "breaker open and closed events", func() bool {
		var opened, closed bool
		for _, m := range events.all() {
			opened = opened || m.RoutingKey == "breaker.downstream.open"
			closed = closed || m.RoutingKey == "breaker.downstream.closed"
		}
		return opened && closed
	})
	run.stop(t)
	l.check(tl, 0)
}

// TestFaultsDownstreamSlowerThanItsTimeout has every task's first attempt
// run over the target's timeout (answered on the retry) and every tenth
// task always slow (dead-lettered once retries and redeliveries are
// spent).
func TestFaultsDownstreamSlowerThanItsTimeout(t *testing.T) {
	e := newEnv(t)
	in := e.inspector()
	var mu sync.Mutex
	tries := map[string]int{}
	ds := newDownstream(t, func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Correlation-ID")
		mu.Lock()
		tries[id]++
		k := tries[id]
		mu.Unlock()
		if k == 1 || taskNumber(id)%10 == 0 {
			paced(2*time.Second)(w, r) // the relay gives up after 300ms
			return
		}
		echo(w, r)
	})
	q := e.name("it.faults.slow")
	cfg := e.loadConfig(faultConfig{URL: ds.URL, Queues: []string{q}, Timeout: "300ms", Backoff: "max_retries: 1", Redelivery: "200ms"}.yaml())
	run := e.startRelay(cfg)
	l := e.ledger("slow downstream: every first attempt over the 300ms timeout, every tenth task always", in)
	const n = 60
	l.publishNow(e.url, q, 0, n, func(i int) amqp.Publishing { return l.task(i, []byte(fmt.Sprint("task ", i))) })
	tl := l.settle(90*time.Second, deadLetterQueues(cfg), settledQueues(cfg)...)
	run.stop(t)
	l.check(tl, 0)
	if tl.DeadLettered != n/10 || tl.Answered != n-n/10 {
		t.Fatalf("answered %d, dead-lettered %d; want %d and %d", tl.Answered, tl.DeadLettered, n-n/10, n/10)
	}
	for i := 0; i < n; i += 10 {
		if r := l.reason(l.id(i)); !strings.Contains(r, "no response from target svc within 300ms") {
			t.Errorf("task %d dead-lettered with reason %q", i, r)
		}
	}
	for _, m := range l.rep.all() {
		if _, failed := m.Headers[relay.HeaderError]; failed {
			// (1 attempt + 1 retry) x (first delivery + 1 redelivery)
			if got := headerInt(m.Headers, relay.HeaderAttempts); got != 4 {
				t.Errorf("error reply for %s: %d attempts, want 4", m.CorrelationId, got)
			}
			continue
		}
		if got := headerInt(m.Headers, relay.HeaderAttempts); got != 2 {
			t.Errorf("reply for %s: %d attempts, want 2", m.CorrelationId, got)
		}
	}
}

// TestFaultsDownstream429WithRetryAfter answers every task's first
// attempt with 429 and Retry-After: 1; the relay waits the second the
// downstream asked for, then succeeds.
func TestFaultsDownstream429WithRetryAfter(t *testing.T) {
	e := newEnv(t)
	in := e.inspector()
	var mu sync.Mutex
	seen := map[string][]time.Time{}
	ds := newDownstream(t, func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Correlation-ID")
		mu.Lock()
		seen[id] = append(seen[id], time.Now())
		k := len(seen[id])
		mu.Unlock()
		if k == 1 {
			w.Header().Set("Retry-After", "1")
			status(http.StatusTooManyRequests)(w, r)
			return
		}
		echo(w, r)
	})
	q := e.name("it.faults.429")
	cfg := e.loadConfig(faultConfig{URL: ds.URL, Queues: []string{q}, Backoff: "max: 2s, max_retries: 2"}.yaml())
	run := e.startRelay(cfg)
	l := e.ledger("downstream answering 429 with Retry-After: 1 to every first attempt", in)
	const n = 30
	l.publishNow(e.url, q, 0, n, func(i int) amqp.Publishing { return l.task(i, []byte(fmt.Sprint("task ", i))) })
	tl := l.settle(60*time.Second, deadLetterQueues(cfg), settledQueues(cfg)...)
	run.stop(t)
	l.check(tl, 0)
	if tl.Answered != n {
		t.Fatalf("answered %d of %d", tl.Answered, n)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, at := range seen {
		if len(at) != 2 {
			t.Errorf("%s: %d attempts, want 2", id, len(at))
			continue
		}
		// A lower bound only: a loaded machine makes waits longer, never
		// shorter.
		if gap := at[1].Sub(at[0]); gap < 900*time.Millisecond {
			t.Errorf("%s: retried %s after a 429 with Retry-After: 1", id, gap)
		}
	}
}

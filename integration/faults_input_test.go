package integration

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/relay"
)

// TestFaultsBadInputInterleavedWithGoodTraffic feeds the relay every kind
// of bad message it must survive, interleaved with good ones: each bad
// one goes to its dead-letter queue with a reason, every good one is
// answered or published, and the relay keeps running.
func TestFaultsBadInputInterleavedWithGoodTraffic(t *testing.T) {
	e := newEnv(t)
	in := e.inspector()
	huge := bytes.Repeat([]byte("h"), 1<<20)
	ds := newDownstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") == "application/x-huge" {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(huge)
			return
		}
		echo(w, r)
	})
	q := e.name("it.faults.bad")
	oq := e.name("it.faults.bad.out")
	allowed := e.name("it.faults.bad.events")
	other := e.name("it.faults.bad.other")
	dest := e.name("it.faults.bad.dest")
	e.routeTo(dest, "routed.#", allowed, other)
	cfg := e.loadConfig(faultConfig{URL: ds.URL, Queues: []string{q}, MaxResp: 64 << 10, Outbound: oq, Exchanges: []string{allowed}}.yaml())
	run := e.startRelay(cfg)
	l := e.ledger("bad input interleaved with good traffic (9 kinds, work and outbound)", in)
	l.dests = []string{dest}

	outbound := func(m amqp.Publishing, h amqp.Table) (string, amqp.Publishing) {
		m.ReplyTo = ""
		m.Headers = h
		return oq, m
	}
	kinds := []struct {
		name   string
		make   func(m amqp.Publishing) (string, amqp.Publishing)
		reason string // "" for good traffic
	}{
		{"good task with garbage relay headers", func(m amqp.Publishing) (string, amqp.Publishing) {
			m.Headers = amqp.Table{relay.HeaderAttempts: "many", relay.HeaderRedeliveries: int64(-3), "nested": amqp.Table{"a": []any{int32(1), "x"}}}
			return q, m
		}, ""},
		{"task body over max_request_bytes", func(m amqp.Publishing) (string, amqp.Publishing) {
			m.Body = bytes.Repeat([]byte("x"), 5000)
			return q, m
		}, "over target svc's limit of 4096 bytes"},
		{"downstream body over max_response_bytes", func(m amqp.Publishing) (string, amqp.Publishing) {
			m.ContentType = "application/x-huge"
			return q, m
		}, "with a body over the 65536-byte limit"},
		{"good outbound message", func(m amqp.Publishing) (string, amqp.Publishing) {
			return outbound(m, amqp.Table{relay.HeaderExchange: allowed, relay.HeaderRoutingKey: "routed.ok"})
		}, ""},
		{"outbound without headers", func(m amqp.Publishing) (string, amqp.Publishing) {
			return outbound(m, nil)
		}, "missing header x-relay-exchange"},
		{"outbound with non-string headers", func(m amqp.Publishing) (string, amqp.Publishing) {
			return outbound(m, amqp.Table{relay.HeaderExchange: allowed, relay.HeaderRoutingKey: amqp.Table{"k": int32(1)}})
		}, "header x-relay-routing-key must be a string"},
		{"outbound to an exchange not allowed", func(m amqp.Publishing) (string, amqp.Publishing) {
			return outbound(m, amqp.Table{relay.HeaderExchange: other, relay.HeaderRoutingKey: "routed.ok"})
		}, "is not allowed for outbound queue"},
		{"outbound unroutable", func(m amqp.Publishing) (string, amqp.Publishing) {
			return outbound(m, amqp.Table{relay.HeaderExchange: allowed, relay.HeaderRoutingKey: "nobody.listens"})
		}, "unroutable"},
		{"outbound routing key over 255 bytes", func(m amqp.Publishing) (string, amqp.Publishing) {
			return outbound(m, amqp.Table{relay.HeaderExchange: allowed, relay.HeaderRoutingKey: "routed." + strings.Repeat("k", 300)})
		}, "over AMQP's 255"},
	}
	const rounds = 15
	n := rounds * len(kinds)
	if err := l.publishRouted(e.url, 0, n, 0, func(i int) (string, amqp.Publishing) {
		return kinds[i%len(kinds)].make(l.task(i, []byte(fmt.Sprint("message ", i))))
	}); err != nil {
		t.Fatal(err)
	}
	l.settle(60*time.Second, deadLetterQueues(cfg), settledQueues(cfg)...)

	// Still serving: a last batch of good tasks, all answered.
	l.publishNow(e.url, q, n, n+20, func(i int) amqp.Publishing { return l.task(i, []byte(fmt.Sprint("after ", i))) })
	tl := l.settle(60*time.Second, deadLetterQueues(cfg), settledQueues(cfg)...)
	if !run.r.Ready() {
		t.Fatal("relay not ready after the bad input")
	}
	run.stop(t)
	l.check(tl, 0)

	wantDead := 0
	for k, kind := range kinds {
		if kind.reason != "" {
			wantDead += rounds
		}
		for i := k; i < n; i += len(kinds) {
			got := l.reason(l.id(i))
			switch {
			case kind.reason == "" && got != "":
				t.Errorf("%s (%d) dead-lettered: %s", kind.name, i, got)
			case kind.reason != "" && !strings.Contains(got, kind.reason):
				t.Errorf("%s (%d): reason %q, want it to contain %q", kind.name, i, got, kind.reason)
			}
		}
	}
	if tl.DeadLettered != wantDead || tl.Answered != n+20-wantDead {
		t.Fatalf("answered %d, dead-lettered %d; want %d and %d", tl.Answered, tl.DeadLettered, n+20-wantDead, wantDead)
	}
}

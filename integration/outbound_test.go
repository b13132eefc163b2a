package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/relay"
)

func TestOutboundAllowlistHeadersAndUnroutable(t *testing.T) {
	e := newEnv(t)
	q := e.name("it.out")
	allowed := e.name("it.out.events")
	other := e.name("it.out.other")
	dest := e.name("it.out.dest")
	e.own([]string{dest}, []string{allowed, other})
	for _, x := range []string{allowed, other} {
		if err := e.ch.ExchangeDeclare(x, "topic", true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.ch.QueueDeclare(dest, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.ch.QueueBind(dest, "routed.#", allowed, false, nil); err != nil {
		t.Fatal(err)
	}
	cfg := e.loadConfig(fmt.Sprintf(`breakers:
  defaults: {failure_threshold: 5}
  amqp: {}
bulkheads:
  pool: {size: 4, overflow: 0, timeout: 5s}
targets: {}
work: []
outbound:
  - {queue: %s, breaker: amqp, bulkhead: pool, exchanges: [%s]}
`, q, allowed))
	e.startRelay(cfg)

	good := func(i int) amqp.Publishing {
		return amqp.Publishing{Body: []byte(fmt.Sprintf("event %d", i)), ContentType: "text/plain", MessageId: fmt.Sprint("m", i),
			Headers: amqp.Table{relay.HeaderExchange: allowed, relay.HeaderRoutingKey: "routed.x", "app": "kept"}}
	}
	const n = 30
	e.publishMany(q, n, good)
	bad := []struct {
		headers amqp.Table
		reason  string
	}{
		{amqp.Table{relay.HeaderRoutingKey: "routed.x"}, "missing header x-relay-exchange"},
		{amqp.Table{relay.HeaderExchange: allowed}, "missing header x-relay-routing-key"},
		{amqp.Table{relay.HeaderExchange: int32(7), relay.HeaderRoutingKey: "routed.x"}, "header x-relay-exchange must be a string"},
		{amqp.Table{relay.HeaderExchange: other, relay.HeaderRoutingKey: "routed.x"}, "is not allowed for outbound queue"},
		{amqp.Table{relay.HeaderExchange: allowed, relay.HeaderRoutingKey: "nobody.listens"}, "unroutable"},
	}
	for i, b := range bad {
		e.publish(q, amqp.Publishing{Body: []byte(fmt.Sprint("bad ", i)), Headers: b.headers})
	}
	eventually(t, 20*time.Second, "30 routed", func() bool { m, _ := e.depth(dest); return m == n })
	eventually(t, 20*time.Second, "5 dead letters", func() bool { m, _ := e.depth(q + ".dlq"); return m == len(bad) })

	for _, m := range e.take(dest) {
		for k := range m.Headers {
			if strings.HasPrefix(k, "x-relay-") {
				t.Fatalf("published message kept relay header %s", k)
			}
		}
		if m.Headers["app"] != "kept" || m.ContentType != "text/plain" || !strings.HasPrefix(string(m.Body), "event ") || m.DeliveryMode != amqp.Persistent {
			t.Fatalf("published message lost properties: %+v", m)
		}
	}
	dead := e.take(q + ".dlq")
	for i, b := range bad {
		found := false
		for _, m := range dead {
			if string(m.Body) == fmt.Sprint("bad ", i) {
				found = true
				if !strings.Contains(fmt.Sprint(m.Headers[relay.HeaderError]), b.reason) {
					t.Errorf("bad %d: reason %q, want it to contain %q", i, m.Headers[relay.HeaderError], b.reason)
				}
			}
		}
		if !found {
			t.Errorf("bad %d not dead-lettered", i)
		}
	}
	if m, _ := e.depth(q); m != 0 {
		t.Fatalf("%d messages left on the outbound queue", m)
	}
}

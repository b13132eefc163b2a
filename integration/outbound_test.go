package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/relay"
)

// outboundYAML configures an outbound-only relay: queue q may publish to
// exchange exch through a bulkhead of size slots; breaker holds the amqp
// breaker's settings and entry more keys of the outbound entry.
func outboundYAML(q, exch string, size int, breaker, entry string) string {
	return fmt.Sprintf(`breakers:
  amqp: {%s}
bulkheads:
  pool: {size: %d, overflow: 0, timeout: 5s}
targets: {}
work: []
outbound:
  - {queue: %s, breaker: amqp, bulkhead: pool, exchanges: [%s]%s}
`, breaker, size, q, exch, entry)
}

func TestOutboundAllowlistHeadersAndUnroutable(t *testing.T) {
	e := newEnv(t)
	q := e.name("it.out")
	allowed := e.name("it.out.events")
	other := e.name("it.out.other")
	dest := e.name("it.out.dest")
	e.routeTo(dest, "routed.#", allowed, other)
	cfg := e.loadConfig(outboundYAML(q, allowed, 4, "failure_threshold: 5", ""))
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

// TestOutboundToSeparateDestinationConnection gives the outbound entry
// its own destination URL (the same broker here, reached over a
// connection of its own), whose allowed exchange does not exist yet: the
// relay declares it there and publishes through that connection.
func TestOutboundToSeparateDestinationConnection(t *testing.T) {
	e := newEnv(t)
	q := e.name("it.out.dest")
	exch := e.name("it.out.dest.events")
	dest := e.name("it.out.dest.q")
	e.own([]string{dest}, []string{exch})
	cfg := e.loadConfig(outboundYAML(q, exch, 4, "", fmt.Sprintf(", url: %q", e.url)))
	run := e.startRelay(cfg)
	// The relay declared the destination exchange on start.
	if err := e.ch.ExchangeDeclarePassive(exch, "topic", true, false, false, false, nil); err != nil {
		t.Fatalf("destination exchange not declared: %v", err)
	}
	if _, err := e.ch.QueueDeclare(dest, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.ch.QueueBind(dest, "#", exch, false, nil); err != nil {
		t.Fatal(err)
	}
	const n = 20
	e.publishMany(q, n, func(i int) amqp.Publishing {
		return amqp.Publishing{Body: []byte(fmt.Sprint(i)), Headers: amqp.Table{relay.HeaderExchange: exch, relay.HeaderRoutingKey: "k"}}
	})
	eventually(t, 20*time.Second, "20 published to the destination", func() bool { m, _ := e.depth(dest); return m == n })
	_, body := run.get(t, "/metrics")
	if !strings.Contains(body, `relay_amqp_connected{connection="outbound `+q+`"} 1`) {
		t.Fatalf("metrics lack the destination connection:\n%s", grepLines(body, "relay_amqp_connected"))
	}
	// Every publish through the destination's connection was confirmed.
	if want := fmt.Sprintf(`relay_amqp_publishes_total{connection="outbound %s",outcome="ack"} %d`, q, n); !strings.Contains(body, want) {
		t.Fatalf("metrics lack %s:\n%s", want, grepLines(body, "relay_amqp_publishes_total"))
	}
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestOutboundNackedPublishesRetriedUntilTheDestinationHasRoom fills a
// destination queue that refuses publishes past 5 messages (the broker
// nacks them): the refused messages are published again, go back to the
// outbound queue when their attempts run out, and every one arrives once
// room is made, none lost, none twice, none dead-lettered.
func TestOutboundNackedPublishesRetriedUntilTheDestinationHasRoom(t *testing.T) {
	e := newEnv(t)
	q := e.name("it.out.full")
	exch := e.name("it.out.full.events")
	dest := e.name("it.out.full.dest")
	e.own([]string{dest}, []string{exch})
	if err := e.ch.ExchangeDeclare(exch, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ch.QueueDeclare(dest, true, false, false, false, amqp.Table{"x-max-length": int32(5), "x-overflow": "reject-publish"}); err != nil {
		t.Fatal(err)
	}
	if err := e.ch.QueueBind(dest, "#", exch, false, nil); err != nil {
		t.Fatal(err)
	}
	cfg := e.loadConfig(outboundYAML(q, exch, 8, "failure_threshold: 10000", ""))
	run := e.startRelay(cfg)
	const n = 12
	e.publishMany(q, n, func(i int) amqp.Publishing {
		return amqp.Publishing{Body: []byte(fmt.Sprint("m", i)), Headers: amqp.Table{relay.HeaderExchange: exch, relay.HeaderRoutingKey: "k"}}
	})
	seen := map[string]int{}
	for total := 0; total < n; {
		want := min(5, n-total)
		eventually(t, 30*time.Second, fmt.Sprintf("%d more on the full destination", want), func() bool { m, _ := e.depth(dest); return m >= want })
		for _, m := range e.take(dest) {
			seen[string(m.Body)]++
			total++
		}
	}
	for i := range n {
		if c := seen[fmt.Sprint("m", i)]; c != 1 {
			t.Errorf("m%d arrived %d times", i, c)
		}
	}
	eventually(t, 10*time.Second, "outbound queue settled", func() bool { m, _ := e.depth(q); return m == 0 })
	if m, _ := e.depth(q + ".dlq"); m != 0 {
		t.Fatalf("%d dead-lettered; a nacked publish must be tried again, not dead-lettered", m)
	}
	_, body := run.get(t, "/metrics")
	if strings.Contains(body, fmt.Sprintf(`relay_outbound_messages_total{outcome="nacked",queue="%s"} 0`, q)) ||
		!strings.Contains(body, fmt.Sprintf(`relay_outbound_messages_total{outcome="published",queue="%s"} %d`, q, n)) {
		t.Fatalf("metrics:\n%s", grepLines(body, "relay_outbound_messages_total"))
	}
}

// TestOutboundStopMidStreamLosesNothing stops a relay while it drains a
// full outbound queue with hundreds of publishes awaiting confirmation:
// it stops promptly, and every message is either at the destination or
// back on the outbound queue, exactly once.
func TestOutboundStopMidStreamLosesNothing(t *testing.T) {
	e := newEnv(t)
	q := e.name("it.out.stop")
	exch := e.name("it.out.stop.events")
	dest := e.name("it.out.stop.dest")
	e.routeTo(dest, "#", exch)
	cfg := e.loadConfig(outboundYAML(q, exch, 500, "", ", prefetch: 500"))
	// The queue is filled before the relay starts (which would declare it).
	e.own([]string{q, q + ".dlq"}, nil)
	if _, err := e.ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	const n = 4000
	e.publishMany(q, n, func(i int) amqp.Publishing {
		return amqp.Publishing{Body: []byte(fmt.Sprint("m", i)), Headers: amqp.Table{relay.HeaderExchange: exch, relay.HeaderRoutingKey: "k"}}
	})
	run := e.startRelay(cfg)
	eventually(t, 30*time.Second, "the relay publishing", func() bool { m, _ := e.depth(dest); return m >= 300 })
	took, ok := run.stopWithin(t, 10*time.Second)
	if !ok {
		t.Fatal("relay did not stop within 10s")
	}
	moved, _ := e.depth(dest)
	if moved == n {
		t.Logf("every message moved before the stop (%v); nothing was in flight to check", took)
	}
	eventually(t, 10*time.Second, "every message at the destination or back on the queue", func() bool {
		left, _ := e.depth(q)
		return left+moved == n
	})
	seen := map[string]int{}
	for _, m := range append(e.take(dest), e.take(q)...) {
		seen[string(m.Body)]++
	}
	for i := range n {
		if c := seen[fmt.Sprint("m", i)]; c != 1 {
			t.Fatalf("m%d found %d times (%d moved, stop took %v)", i, c, moved, took)
		}
	}
	t.Logf("stopped in %v with %d of %d moved", took, moved, n)
}

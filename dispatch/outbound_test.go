package dispatch

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/bulkhead"

	amqp "github.com/rabbitmq/amqp091-go"
)

func testOutbound() *Outbound {
	return NewOutbound(OutboundSpec{Queue: "out", Exchanges: []string{"vsm.events"}})
}

func TestOutboundDestination(t *testing.T) {
	cases := []struct {
		h       amqp.Table
		ex, key string
		problem string
	}{
		{amqp.Table{HeaderExchange: "vsm.events", HeaderRoutingKey: "a.b"}, "vsm.events", "a.b", ""},
		{amqp.Table{HeaderExchange: []byte("vsm.events"), HeaderRoutingKey: ""}, "vsm.events", "", ""},
		{amqp.Table{HeaderRoutingKey: "a"}, "", "", "missing header x-relay-exchange"},
		{amqp.Table{HeaderExchange: "vsm.events"}, "", "", "missing header x-relay-routing-key"},
		{amqp.Table{HeaderExchange: int32(1), HeaderRoutingKey: "a"}, "", "", "header x-relay-exchange must be a string, got int32"},
		{amqp.Table{HeaderExchange: "vsm.events", HeaderRoutingKey: true}, "", "", "header x-relay-routing-key must be a string, got bool"},
		{amqp.Table{HeaderExchange: "", HeaderRoutingKey: "q"}, "", "", `exchange "" is not allowed for outbound queue out (allowed: vsm.events)`},
		{amqp.Table{HeaderExchange: "vsm.events", HeaderRoutingKey: strings.Repeat("k", 256)}, "", "", "routing key of 256 bytes is over AMQP's 255"},
	}
	o := testOutbound()
	for _, c := range cases {
		ex, key, problem := o.destination(c.h)
		if ex != c.ex || key != c.key || problem != c.problem {
			t.Errorf("destination(%v) = %q, %q, %q; want %q, %q, %q", c.h, ex, key, problem, c.ex, c.key, c.problem)
		}
	}
}

func FuzzOutboundDestination(f *testing.F) {
	f.Add("vsm.events", "a.b", false)
	f.Add("other", "", true)
	f.Fuzz(func(t *testing.T, exchange, key string, asBytes bool) {
		h := amqp.Table{HeaderExchange: exchange, HeaderRoutingKey: key}
		if asBytes {
			h[HeaderExchange] = []byte(exchange)
		}
		ex, k, problem := testOutbound().destination(h)
		if problem == "" {
			// Only an allowed exchange and a key AMQP can carry pass.
			if ex != "vsm.events" || exchange != "vsm.events" || k != key || len(k) > 255 {
				t.Fatalf("passed %q %q", ex, k)
			}
		} else if ex != "" || k != "" {
			t.Fatalf("a refused message still named a destination: %q %q (%s)", ex, k, problem)
		}
	})
}

// outboundRig is an outbound queue "out" allowing vsm.events, in front of
// a fake destination.
func outboundRig(t *testing.T, dest *publisher, threshold int) (*Outbound, *publisher, *breaker.Breaker) {
	t.Helper()
	br, err := breaker.New("dest", breaker.Settings{FailureThreshold: threshold, SuccessThreshold: 1, ResetTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := bulkhead.New("pool", bulkhead.Settings{Size: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	own := &publisher{}
	o := NewOutbound(OutboundSpec{
		Queue: "out", Exchanges: []string{"vsm.events"}, Prefetch: 8,
		Guard: Guard{Breaker: br, Bulkhead: pool}, Destination: dest, Publisher: own,
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
	})
	ctx, cancel := context.WithCancel(context.Background())
	o.Start(ctx, context.Background())
	t.Cleanup(func() { cancel(); o.Stop() })
	return o, own, br
}

// The outbound path's decision table: routed, refused by the allowlist,
// returned, nacked, destination down, breaker open.
func TestOutboundOutcomes(t *testing.T) {
	routed := amqp.Table{HeaderExchange: "vsm.events", HeaderRoutingKey: "a.b", "x-custom": "kept"}
	cases := []struct {
		name      string
		h         amqp.Table
		fail      func(n int) error // the destination's answer to its n-th publish
		open      bool
		wantDest  int  // publishes to the destination
		wantDLQ   bool // dead-lettered on the relay's broker
		wantAck   bool
		wantLabel string
	}{
		{"routed", routed, nil, false, 1, false, true, "published"},
		{"refused by the allowlist", amqp.Table{HeaderExchange: "elsewhere", HeaderRoutingKey: "k"}, nil, false, 0, true, true, "dead_lettered"},
		{"missing its headers", amqp.Table{}, nil, false, 0, true, true, "dead_lettered"},
		{"returned unroutable", routed, func(int) error { return &broker.ReturnedError{ReplyCode: 312, ReplyText: "NO_ROUTE"} }, false, 1, true, true, "returned"},
		{"nacked once, then confirmed", routed, func(n int) error {
			if n == 1 {
				return broker.ErrNacked
			}
			return nil
		}, false, 2, false, true, "published"},
		{"nacked every time: back to the queue", routed, func(int) error { return broker.ErrNacked }, false, 4, false, true, "requeued"},
		{"destination down: back to the queue", routed, func(int) error { return broker.ErrLost }, false, 4, false, true, "requeued"},
		{"breaker open: back untouched", routed, nil, true, 0, false, true, "requeued"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dest := &publisher{}
			n := 0
			if c.fail != nil {
				dest.fail = func(publishing) error { n++; return c.fail(n) }
			}
			o, own, br := outboundRig(t, dest, 100)
			if c.open {
				br.ForceOpen()
			}
			a := newAcks()
			d := amqp.Delivery{Acknowledger: a, DeliveryTag: 1, Headers: c.h, Body: []byte("event")}
			o.Deliver(d)
			o.Wait()
			if got := len(dest.all()); got != c.wantDest {
				t.Errorf("%d publishes to the destination, want %d", got, c.wantDest)
			}
			if c.wantDest > 0 {
				m := dest.all()[0]
				if m.exchange != "vsm.events" || m.key != "a.b" || m.msg.Headers["x-custom"] != "kept" || m.msg.Headers[HeaderExchange] != nil {
					t.Errorf("published %s %s %v", m.exchange, m.key, m.msg.Headers)
				}
			}
			if dl := own.to("out.dlq"); len(dl) != map[bool]int{true: 1}[c.wantDLQ] {
				t.Errorf("%d dead letters, want dead-lettered %v", len(dl), c.wantDLQ)
			} else if c.wantDLQ && dl[0].msg.Headers[HeaderError] == nil {
				t.Error("dead letter without x-relay-error")
			}
			if back := len(own.to("out")); (c.wantLabel == "requeued") != (back == 1) {
				t.Errorf("%d published back to the queue", back)
			}
			acked, nacked := a.counts()
			if c.wantAck && (acked != 1 || nacked != 0) || !c.wantAck && (acked != 0 || nacked != 1) {
				t.Errorf("acked %d, nacked %d; want ack %v", acked, nacked, c.wantAck)
			}
			got := map[string]float64{
				"published": testutil.ToFloat64(o.m.Published), "returned": testutil.ToFloat64(o.m.Returned),
				"dead_lettered": testutil.ToFloat64(o.m.DeadLettered), "requeued": testutil.ToFloat64(o.m.Requeued),
			}
			total := 0.0
			for _, v := range got {
				total += v
			}
			if got[c.wantLabel] != 1 || total != 1 {
				t.Errorf("counted %v, want once as %s", got, c.wantLabel)
			}
		})
	}
}

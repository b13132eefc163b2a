package relay

import (
	"context"
	"fmt"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/broker"
)

func testOutbound() *outboundQueue {
	return &outboundQueue{queue: "out", allowed: map[string]bool{"vsm.events": true}, allowTxt: "vsm.events"}
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

func TestConfirmOutcomes(t *testing.T) {
	cases := map[error]string{
		nil:                                   "ack",
		&broker.ReturnedError{ReplyCode: 312}: "returned",
		broker.ErrNacked:                      "nack",
		broker.ErrLost:                        "lost",
		context.DeadlineExceeded:              "lost",
		fmt.Errorf("wrapped: %w", broker.ErrNacked): "nack",
	}
	for err, want := range cases {
		if got := confirmOutcome(err); got != want {
			t.Errorf("confirmOutcome(%v) = %q, want %q", err, got, want)
		}
	}
}

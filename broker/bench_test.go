package broker

import (
	"bytes"
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/internal/testbroker"
)

// BenchmarkPublishAndWait publishes a reply as the work path does
// (mandatory, a few headers, 256 bytes) and waits for its confirm, one at
// a time, on the machine's broker. Its allocs/op are the publisher's and
// amqp091's per publish; its ns/op is mostly the round trip.
func BenchmarkPublishAndWait(b *testing.B) {
	url := testbroker.URL(b)
	q := testbroker.Unique("relay.bench.publish")
	testbroker.CleanupQueues(b, url, q)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Dial(ctx, Options{Name: "bench", Instance: "b", URL: url, Topology: func(conn *amqp.Connection) error {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		defer ch.Close()
		// The queue keeps the last thousand: it is routed to, not read.
		_, err = ch.QueueDeclare(q, false, false, false, false, amqp.Table{"x-max-length": int32(1000)})
		return err
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	pub := c.NewPublisher()
	defer pub.Close()
	msg := amqp.Publishing{
		ContentType: "application/json", CorrelationId: "c-1", Body: bytes.Repeat([]byte("x"), 256),
		Headers: amqp.Table{"x-relay-status": int32(200), "x-relay-target": "svc", "x-relay-attempts": int32(1)},
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := pub.PublishAndWait(ctx, "", q, true, msg); err != nil {
			b.Fatal(err)
		}
	}
}

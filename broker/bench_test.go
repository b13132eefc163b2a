package broker

import (
	"bytes"
	"context"
	"syscall"
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
	pub, q, msg := benchPublisher(b)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if err := pub.PublishAndWait(ctx, "", q, true, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishAndWaitParallel is BenchmarkPublishAndWait with 32
// publishers at once, as the work path's workers publish, and reports the
// process's CPU time per publish (cpu-ns/op): on a shared machine the
// wall time per publish is mostly the broker's and other work's.
func BenchmarkPublishAndWaitParallel(b *testing.B) {
	pub, q, msg := benchPublisher(b)
	ctx := b.Context()
	b.SetParallelism(16) // 32 on two cores
	b.ReportAllocs()
	cpu := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := pub.PublishAndWait(ctx, "", q, true, msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
}

// processCPU is the process's user and system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchPublisher is a Publisher on the machine's broker, a queue to
// publish to, and a reply as the work path publishes it.
func benchPublisher(b *testing.B) (*Publisher, string, amqp.Publishing) {
	url := testbroker.URL(b)
	q := testbroker.Unique("relay.bench.publish")
	testbroker.CleanupQueues(b, url, q)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel() // bounds the dial only
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
	b.Cleanup(func() { c.Close() })
	pub := c.NewPublisher()
	b.Cleanup(pub.Close)
	msg := amqp.Publishing{
		ContentType: "application/json", CorrelationId: "c-1", Body: bytes.Repeat([]byte("x"), 256),
		Headers: amqp.Table{"x-relay-status": int32(200), "x-relay-target": "svc", "x-relay-attempts": int32(1)},
	}
	return pub, q, msg
}

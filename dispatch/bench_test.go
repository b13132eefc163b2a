package dispatch

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/backoff"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/bulkhead"
)

// echoTransport answers every request 200 with a fixed body, as the
// throughput harness's echo server does, allocating only what a response
// needs.
type echoTransport struct{}

func (echoTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	_, _ = io.Copy(io.Discard, req.Body)
	return &http.Response{
		StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(`{"ok":true}`)), ContentLength: 11, Request: req,
	}, nil
}

// confirmAll confirms every publish at once and keeps nothing.
type confirmAll struct{ conf *broker.Confirmation }

func (p confirmAll) Publish(context.Context, string, string, bool, amqp.Publishing) (*broker.Confirmation, error) {
	return p.conf, nil
}

// nopAcks settles nothing: an amqp.Acknowledger that only returns.
type nopAcks struct{}

func (nopAcks) Ack(uint64, bool) error        { return nil }
func (nopAcks) Nack(uint64, bool, bool) error { return nil }
func (nopAcks) Reject(uint64, bool) error     { return nil }

// BenchmarkWorkTask runs one task of the work path through decide and
// settle as the relay runs it (breaker, bulkhead, metrics, a reply with
// trace headers), against an in-process downstream and publisher: its
// allocs/op are the relay's own per task, less the HTTP transport's and
// the broker client's.
func BenchmarkWorkTask(b *testing.B) {
	br, err := breaker.New("svc", breaker.Settings{
		FailureThreshold: 100, SuccessThreshold: 1, ResetTimeout: time.Minute,
		HalfOpenTimeout: time.Minute, WindowSize: time.Minute, Timeout: time.Minute,
	})
	if err != nil {
		b.Fatal(err)
	}
	pool, err := bulkhead.New("pool", bulkhead.Settings{Size: 4, MaxWaiting: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	tg := NewTarget(TargetSpec{
		Name: "svc", URL: "http://svc.test/work", Method: http.MethodPost, Timeout: time.Second,
		MaxRequestBytes: 1 << 20, MaxResponseBytes: 1 << 20, Client: &http.Client{Transport: echoTransport{}},
		Guard:     Guard{Breaker: br, Bulkhead: pool},
		Backoff:   backoff.Policy{Initial: 10 * time.Millisecond, Max: time.Second, MaxRetries: 3},
		UserAgent: "relay-bench",
	})
	w := NewWork(WorkSpec{Queue: "q", Target: tg, Redelivery: []time.Duration{time.Second}, Prefetch: 8,
		Publisher: confirmAll{broker.Resolved(nil)}})
	w.stop = context.Background()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := amqp.Delivery{
		Acknowledger: nopAcks{}, DeliveryTag: 1, Body: []byte(strings.Repeat("x", 256)),
		Headers:     amqp.Table{HeaderTraceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		ContentType: "application/json", CorrelationId: "c-1", MessageId: "m-1", ReplyTo: "replies",
		DeliveryMode: amqp.Persistent,
	}
	b.ReportAllocs()
	for b.Loop() {
		w.handle(ctx, d)
	}
}

package plain

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Options configure the loop.
type Options struct {
	// URL of the broker.
	URL string
	// Queue to consume tasks from.
	Queue string
	// QueueType, when set (classic or quorum), has the loop declare Queue
	// as a durable queue of that type (x-queue-type) before it consumes,
	// as a team's own loop would. Empty: the queue must exist.
	QueueType string
	// Target is the downstream URL every task is POSTed to.
	Target string
	// Prefetch is the consumer's basic.qos. Zero: 64.
	Prefetch int
	// Workers handle deliveries at once. Zero: 32.
	Workers int
	// Name is carried in the reply's x-relay-target header, so the reply
	// is the same size as the relay's.
	Name string
	// Ready, if set, is called once the loop is consuming.
	Ready func()
}

// Run consumes until ctx ends, then closes its connection; anything not
// acked by then goes back to the queue.
func Run(ctx context.Context, o Options) error {
	if o.Prefetch <= 0 {
		o.Prefetch = 64
	}
	if o.Workers <= 0 {
		o.Workers = 32
	}
	conn, err := amqp.DialConfig(o.URL, amqp.Config{Properties: amqp.Table{"connection_name": "bench plain loop"}})
	if err != nil {
		return err
	}
	defer conn.Close()
	cch, err := conn.Channel()
	if err != nil {
		return err
	}
	if o.QueueType != "" {
		if _, err := cch.QueueDeclare(o.Queue, true, false, false, false, amqp.Table{"x-queue-type": o.QueueType}); err != nil {
			return fmt.Errorf("declaring %s: %w", o.Queue, err)
		}
	}
	// Per consumer (global false): quorum queues refuse a global prefetch.
	if err := cch.Qos(o.Prefetch, 0, false); err != nil {
		return err
	}
	deliveries, err := cch.Consume(o.Queue, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	pch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := pch.Confirm(false); err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = o.Workers
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	defer tr.CloseIdleConnections()

	if o.Ready != nil {
		o.Ready()
	}
	var wg sync.WaitGroup
	errs := make(chan error, o.Workers)
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range deliveries {
				if err := handle(ctx, client, pch, o, d); err != nil {
					_ = d.Nack(false, true)
					select {
					case errs <- err:
					default:
					}
					continue
				}
			}
		}()
	}
	<-ctx.Done()
	_ = cch.Close() // closes deliveries; the workers finish what they hold
	wg.Wait()
	select {
	case err := <-errs:
		return fmt.Errorf("plain loop: %w", err)
	default:
		return nil
	}
}

// handle runs one task: POST, reply with a confirm, ack.
func handle(ctx context.Context, client *http.Client, pch *amqp.Channel, o Options, d amqp.Delivery) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.Target, bytes.NewReader(d.Body))
	if err != nil {
		return err
	}
	if d.ContentType != "" {
		req.Header.Set("Content-Type", d.ContentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if d.ReplyTo != "" {
		dc, err := pch.PublishWithDeferredConfirmWithContext(ctx, "", d.ReplyTo, false, false, amqp.Publishing{
			ContentType:   resp.Header.Get("Content-Type"),
			CorrelationId: d.CorrelationId,
			DeliveryMode:  d.DeliveryMode,
			Timestamp:     time.Now(),
			Headers: amqp.Table{
				"x-relay-status":   int32(resp.StatusCode),
				"x-relay-target":   o.Name,
				"x-relay-attempts": int32(1),
			},
			Body: body,
		})
		if err != nil {
			return err
		}
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("reply nacked")
		}
	}
	return d.Ack(false)
}

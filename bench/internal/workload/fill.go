package workload

import (
	"context"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/vsm-relay/relay/bench/internal/stats"
)

// Prefill publishes n copies of msg to queue (default exchange) with
// confirms, at most window unconfirmed at a time, and returns once every
// one is confirmed.
func Prefill(ctx context.Context, url, queue string, n, window int, msg amqp.Publishing) error {
	conn, err := amqp.DialConfig(url, amqp.Config{Properties: amqp.Table{"connection_name": "bench prefill"}})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	window = max(window, 1)
	pending := make([]*amqp.DeferredConfirmation, 0, window)
	waitOldest := func() error {
		dc := pending[0]
		pending = pending[1:]
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("prefilling %s: the broker nacked a message", queue)
		}
		return nil
	}
	for range n {
		if len(pending) == window {
			if err := waitOldest(); err != nil {
				return err
			}
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, msg)
		if err != nil {
			return fmt.Errorf("prefilling %s: %w", queue, err)
		}
		pending = append(pending, dc)
	}
	for len(pending) > 0 {
		if err := waitOldest(); err != nil {
			return err
		}
	}
	return nil
}

// WatchDepth polls depth every interval until it reports at least target
// or timeout passes, and returns every poll with its offset from the
// call. The rate is then read off the points with stats.CrossingRate.
func WatchDepth(ctx context.Context, depth func() (int, error), target int, every, timeout time.Duration) ([]stats.Point, error) {
	start := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	var points []stats.Point
	for {
		n, err := depth()
		if err != nil {
			return points, err
		}
		points = append(points, stats.Point{At: time.Since(start), Count: n})
		if n >= target {
			return points, nil
		}
		select {
		case <-ctx.Done():
			return points, ctx.Err()
		case <-deadline.C:
			return points, fmt.Errorf("only %d of %d messages arrived within %s", n, target, timeout)
		case <-tick.C:
		}
	}
}

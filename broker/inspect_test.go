package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/internal/testbroker"
)

func TestInspectorQueueDepth(t *testing.T) {
	url := testbroker.URL(t)
	empty := testbroker.Unique("relay.test.depth.empty")
	full := testbroker.Unique("relay.test.depth.full")
	consumed := testbroker.Unique("relay.test.depth.consumed")
	missing := testbroker.Unique("relay.test.depth.missing")
	testbroker.CleanupQueues(t, url, empty, full, consumed)
	c := dialTest(t, url, declareQueues(empty, full, consumed))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	pub := c.NewPublisher()
	defer pub.Close()
	for i := range 3 {
		if err := pub.PublishAndWait(ctx, "", full, true, amqp.Publishing{Body: fmt.Appendf(nil, "%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := c.Consume(ConsumerOptions{Queue: consumed}, func(d Delivery) { _ = d.Ack() })
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	waitFor(t, ctx, "consumer active", cons.Active)

	in := c.NewInspector()
	defer in.Close()
	cases := []struct {
		queue     string
		messages  int
		consumers int
		err       error
	}{
		{empty, 0, 0, nil},
		{full, 3, 0, nil},
		{consumed, 0, 1, nil},
		{missing, 0, 0, ErrNoQueue},
		// The channel the missing queue closed is opened again.
		{full, 3, 0, nil},
		{missing, 0, 0, ErrNoQueue},
		{missing, 0, 0, ErrNoQueue},
		{consumed, 0, 1, nil},
	}
	for i, tc := range cases {
		m, n, err := in.QueueDepth(ctx, tc.queue)
		if !errors.Is(err, tc.err) || m != tc.messages || n != tc.consumers {
			t.Fatalf("#%d QueueDepth(%s) = %d, %d, %v; want %d, %d, %v", i, tc.queue, m, n, err, tc.messages, tc.consumers, tc.err)
		}
	}

	// One channel serves call after call.
	in.mu.Lock()
	first := in.ch
	in.mu.Unlock()
	for range 3 {
		if _, _, err := in.QueueDepth(ctx, full); err != nil {
			t.Fatal(err)
		}
	}
	in.mu.Lock()
	same := in.ch == first
	in.mu.Unlock()
	if !same {
		t.Fatal("a fresh channel for every call; want the one channel reused")
	}
}

func TestInspectorConcurrentCallsAndReconnect(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("relay.test.depth.reconnect")
	missing := testbroker.Unique("relay.test.depth.missing")
	testbroker.CleanupQueues(t, url, q)
	c := dialTest(t, url, declareQueues(q))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	in := c.NewInspector()
	defer in.Close()

	// Calls from many goroutines, some about a queue that does not exist
	// (each closing the channel), answer each its own queue.
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			name, want := q, error(nil)
			if i%3 == 0 {
				name, want = missing, ErrNoQueue
			}
			if _, _, err := in.QueueDepth(ctx, name); !errors.Is(err, want) {
				errs <- fmt.Errorf("QueueDepth(%s): %v, want %v", name, err, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// The connection dropped: the next call waits for the new one.
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	conn.Close()
	if _, _, err := in.QueueDepth(ctx, q); err != nil {
		t.Fatalf("QueueDepth after the connection dropped: %v", err)
	}
}

func TestInspectorRefuses(t *testing.T) {
	url := testbroker.URL(t)
	q := testbroker.Unique("relay.test.depth.refuse")
	testbroker.CleanupQueues(t, url, q)
	c := dialTest(t, url, declareQueues(q))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	cases := []struct {
		name  string
		setup func(t *testing.T) (*Inspector, context.Context)
		want  error
	}{
		{"context ended", func(t *testing.T) (*Inspector, context.Context) {
			ended, stop := context.WithCancel(ctx)
			stop()
			return c.NewInspector(), ended
		}, context.Canceled},
		{"another call under way", func(t *testing.T) (*Inspector, context.Context) {
			in := c.NewInspector()
			in.busy <- struct{}{}
			t.Cleanup(func() { <-in.busy })
			short, stop := context.WithTimeout(ctx, 20*time.Millisecond)
			t.Cleanup(stop)
			return in, short
		}, context.DeadlineExceeded},
		{"closed", func(t *testing.T) (*Inspector, context.Context) {
			in := c.NewInspector()
			if _, _, err := in.QueueDepth(ctx, q); err != nil {
				t.Fatal(err)
			}
			in.Close()
			in.Close()
			return in, ctx
		}, ErrClosed},
		{"connection closed", func(t *testing.T) (*Inspector, context.Context) {
			cc := dialTest(t, url, nil)
			cc.Close()
			return cc.NewInspector(), ctx
		}, ErrClosed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, ctx := tc.setup(t)
			defer in.Close()
			if _, _, err := in.QueueDepth(ctx, q); !errors.Is(err, tc.want) {
				t.Fatalf("QueueDepth: %v, want %v", err, tc.want)
			}
		})
	}
}

// The ready messages of a queue, read on the relay's consuming
// connection.
func ExampleConn_NewInspector() {
	ctx := context.Background()
	conn, err := Dial(ctx, Options{Name: "consume", URL: "amqp://guest:guest@127.0.0.1:5672/"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	in := conn.NewInspector()
	defer in.Close()
	messages, consumers, err := in.QueueDepth(ctx, "tasks.llm")
	switch {
	case errors.Is(err, ErrNoQueue):
		fmt.Println("no queue tasks.llm")
	case err != nil:
		fmt.Println(err)
	default:
		fmt.Println(messages, "ready,", consumers, "consumers")
	}
}

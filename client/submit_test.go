package client

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/internal/testbroker"
)

// getAll takes every message waiting in queue.
func getAll(t *testing.T, url, queue string) []amqp.Delivery {
	t.Helper()
	ch := testbroker.Channel(t, url)
	var out []amqp.Delivery
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("get from %s: %v", queue, err)
		}
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

func TestSubmitIsConfirmedAndPersistent(t *testing.T) {
	url := testbroker.URL(t)
	q := queue(t, url, "client.submit")
	c := dial(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Submit(ctx, q, []byte("job"), Headers(map[string]any{"tenant": "acme"})); err != nil {
		t.Fatal(err)
	}
	got := getAll(t, url, q)
	if len(got) != 1 || string(got[0].Body) != "job" || got[0].DeliveryMode != amqp.Persistent ||
		got[0].ReplyTo != "" || len(got[0].MessageId) != 32 || got[0].Headers["tenant"] != "acme" {
		t.Fatalf("queue holds %+v", got)
	}
}

func TestSubmitBatchPipelinesConfirms(t *testing.T) {
	url := testbroker.URL(t)
	c := dial(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("every task confirmed, in order", func(t *testing.T) {
		q := queue(t, url, "client.batch")
		tasks := make([]Task, 2*MaxInFlight+10)
		for i := range tasks {
			tasks[i] = Task{Body: fmt.Appendf(nil, "t%d", i), Options: []CallOption{MessageID(fmt.Sprint(i))}}
		}
		if err := c.SubmitBatch(ctx, q, tasks); err != nil {
			t.Fatal(err)
		}
		got := getAll(t, url, q)
		if len(got) != len(tasks) {
			t.Fatalf("%d messages, want %d", len(got), len(tasks))
		}
		for i, d := range got {
			if d.MessageId != fmt.Sprint(i) || string(d.Body) != fmt.Sprintf("t%d", i) {
				t.Fatalf("message %d: id %q body %q", i, d.MessageId, d.Body)
			}
		}
		if _, confirms := c.waiting(); confirms != 0 {
			t.Errorf("%d confirms still awaited", confirms)
		}
	})
	t.Run("a missing queue fails the first task", func(t *testing.T) {
		err := c.SubmitBatch(ctx, testbroker.Unique("client.none"), []Task{{Body: []byte("a")}, {Body: []byte("b")}})
		var be *BatchError
		if !errors.As(err, &be) || be.Index != 0 || !errors.Is(err, ErrUnroutable) {
			t.Fatalf("SubmitBatch = %v; want a BatchError at 0 matching ErrUnroutable", err)
		}
	})
}

func TestConfirmWaitEndingSaysTheTaskMayHaveBeenPublished(t *testing.T) {
	url := testbroker.URL(t)
	q := queue(t, url, "client.unconfirmed")
	c := dial(t, url)
	p, err := c.Publish(context.Background(), q, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Whether or not the confirm is already in, an ended wait reports
	// either success or "may have been published", never "not published".
	if err := p.Confirmed(ctx); err != nil && !errors.Is(err, ErrUnconfirmed) {
		t.Fatalf("Confirmed = %v, want nil or ErrUnconfirmed", err)
	}
	if err := p.Confirmed(context.Background()); err != nil {
		t.Fatalf("Confirmed = %v", err)
	}
	if _, err := p.Reply(context.Background()); !errors.Is(err, ErrNoReply) {
		t.Fatalf("Reply of a published task = %v, want ErrNoReply", err)
	}
}

func TestInspectReadsDepths(t *testing.T) {
	url := testbroker.URL(t)
	q := queue(t, url, "client.depth")
	c := dial(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.SubmitBatch(ctx, q, []Task{{Body: []byte("1")}, {Body: []byte("2")}, {Body: []byte("3")}}); err != nil {
		t.Fatal(err)
	}
	info, err := c.Inspect(ctx, q)
	if err != nil || info != (QueueInfo{Name: q, Messages: 3, Consumers: 0}) {
		t.Fatalf("Inspect = %+v, %v", info, err)
	}
	missing := testbroker.Unique("client.nodepth")
	if _, err := c.Inspect(ctx, missing); !errors.Is(err, ErrNoQueue) {
		t.Fatalf("Inspect of a missing queue = %v, want ErrNoQueue", err)
	}
	// The refused passive declare closed only its own channel.
	if info, err := c.Inspect(ctx, q); err != nil || info.Messages != 3 {
		t.Fatalf("Inspect after a missing queue = %+v, %v", info, err)
	}
}

package dispatch

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestPoolRunsEveryDeliveryOnItsWorkers(t *testing.T) {
	var handled atomic.Int64
	var mu sync.Mutex
	ctxs := map[context.Context]bool{}
	p := newPool(context.Background(), 3, 2, func(ctx context.Context, d amqp.Delivery) {
		mu.Lock()
		ctxs[ctx] = true
		mu.Unlock()
		handled.Add(1)
	})
	// More than workers plus buffer at once: the surplus waits, none is lost.
	for i := 0; i < 50; i++ {
		p.submit(amqp.Delivery{})
	}
	p.wait()
	p.stop()
	if handled.Load() != 50 {
		t.Fatalf("handled %d of 50", handled.Load())
	}
	if len(ctxs) > 3 {
		t.Fatalf("%d contexts for 3 workers: a context per task, not per worker", len(ctxs))
	}
}

// A delivery handed to a pool with room stays off the heap: submit runs
// on the consumer's goroutine for every task.
func TestPoolSubmitWithRoomDoesNotAllocate(t *testing.T) {
	const runs = 1000
	p := newPool(context.Background(), 1, runs+10, func(context.Context, amqp.Delivery) {})
	defer p.stop()
	d := amqp.Delivery{}
	d.DeliveryTag = 7
	if a := testing.AllocsPerRun(runs, func() { p.submit(d) }); a != 0 {
		t.Fatalf("submit allocates %v times per delivery", a)
	}
	p.wait()
}

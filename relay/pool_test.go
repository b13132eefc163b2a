package relay

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vsm-relay/relay/broker"
)

func TestPoolRunsEveryDeliveryOnItsWorkers(t *testing.T) {
	var handled atomic.Int64
	var mu sync.Mutex
	ctxs := map[context.Context]bool{}
	p := newPool(context.Background(), 3, 2, func(ctx context.Context, d broker.Delivery) {
		mu.Lock()
		ctxs[ctx] = true
		mu.Unlock()
		handled.Add(1)
	})
	// More than workers plus buffer at once: the surplus waits, none is lost.
	for i := 0; i < 50; i++ {
		p.submit(broker.Delivery{})
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

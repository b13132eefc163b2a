package dispatch

import (
	"context"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// pool runs a queue's deliveries on a fixed set of workers. Reusing a
// worker keeps the stack it grew for an HTTP call or a publish, and each
// worker's context is made once, so a request's timeout context is not
// registered on one context shared by every task.
type pool struct {
	tasks    chan amqp.Delivery
	done     chan struct{}
	workers  sync.WaitGroup
	inflight sync.WaitGroup // accepted and not yet finished
}

// newPool starts n workers that call handle for each delivery; buffer is
// how many deliveries may wait for a worker (the prefetch).
func newPool(parent context.Context, n, buffer int, handle func(context.Context, amqp.Delivery)) *pool {
	p := &pool{tasks: make(chan amqp.Delivery, max(1, buffer)), done: make(chan struct{})}
	for range max(1, n) {
		p.workers.Add(1)
		go func() {
			defer p.workers.Done()
			ctx, cancel := context.WithCancel(parent)
			defer cancel()
			for {
				select {
				case d := <-p.tasks:
					handle(ctx, d)
					p.inflight.Done()
				case <-p.done:
					return
				}
			}
		}()
	}
	return p
}

// submit hands d to a worker. It runs on the consumer's goroutine and
// never blocks it: the prefetch bounds the deliveries in hand, and the
// rare surplus (a consumer re-consuming under a new prefetch) waits on a
// goroutine of its own.
func (p *pool) submit(d amqp.Delivery) {
	p.inflight.Add(1)
	select {
	case p.tasks <- d:
	default:
		go p.late(d)
	}
}

// late waits for room for d. It is its own function so that submit's
// common case does not move every delivery to the heap.
func (p *pool) late(d amqp.Delivery) {
	select {
	case p.tasks <- d:
	case <-p.done:
		// Stopped: the delivery stays unacked and the broker delivers it
		// again once its channel closes.
		p.inflight.Done()
	}
}

// wait returns when every accepted delivery has been handled.
func (p *pool) wait() { p.inflight.Wait() }

// stop ends the workers; deliveries still waiting stay unacked.
func (p *pool) stop() {
	select {
	case <-p.done:
	default:
		close(p.done)
	}
	p.workers.Wait()
}

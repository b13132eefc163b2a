package relay

import (
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/intake"
)

// queue is one consumed queue: its consumer, the gate that decides its
// intake, and the dispatcher its deliveries go to.
type queue struct {
	name     string
	breaker  string
	consumer *broker.Consumer
	gate     *intake.Gate
	wait     func() // returns once every delivery taken is settled
}

// startQueues starts every work and outbound queue's dispatcher, and a
// consumer for it behind a gate, which its breaker and the connections it
// publishes on drive.
func (r *Relay) startQueues() error {
	for i, w := range r.work {
		w.Start(r.stop, r.inflight)
		r.cleanup.push(w.Stop)
		q := &queue{name: w.Queue(), breaker: w.Target().Breaker.Name(), wait: w.Wait}
		if err := r.consume(q, r.cfg.Work[i].Prefetch, w.Deliver, r.publishConn); err != nil {
			return err
		}
	}
	for _, o := range r.outbound {
		o.Start(r.stop, r.inflight)
		r.cleanup.push(o.Stop)
		q := &queue{name: o.Queue(), breaker: o.cfg.Breaker, wait: o.Wait}
		publishers := []*broker.Conn{r.publishConn}
		if o.dest != nil {
			publishers = append(publishers, o.dest)
		}
		if err := r.consume(q, o.cfg.Prefetch, o.Deliver, publishers...); err != nil {
			return err
		}
	}
	return nil
}

// consume starts q's consumer, paused until its gate has every hold that
// applies now, and pushes its close.
func (r *Relay) consume(q *queue, prefetch int, deliver func(amqp.Delivery), publishers ...*broker.Conn) error {
	c, err := r.consumeConn.Consume(broker.ConsumerOptions{Queue: q.name, Prefetch: prefetch, Paused: true},
		func(d broker.Delivery) { deliver(d.Delivery) })
	if err != nil {
		return err
	}
	r.cleanup.push(c.Close)
	q.consumer = c
	q.gate = intake.NewGate(c, prefetch)
	for _, pc := range publishers {
		r.conns.Add(pc, q.gate)
	}
	r.followers[q.breaker].Add(q.gate)
	if q.gate.Holds() == 0 {
		q.gate.Set(0, false) // open: consume at the full prefetch
	}
	r.queues = append(r.queues, q)
	return nil
}

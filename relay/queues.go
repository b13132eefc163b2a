package relay

import (
	"context"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/dispatch"
	"github.com/vsm-relay/relay/intake"
	"github.com/vsm-relay/relay/metrics"
)

// queue is one consumed queue: the dispatcher its deliveries go to, its
// consumer, and the gate that decides its intake.
type queue struct {
	name      string
	breaker   string
	prefetch  int
	queueType string
	// entry is the configuration the queue was built from (a config.Work
	// with its target's concurrency, or a config.Outbound): a reload
	// keeps a queue whose entry stays, and starts anew one whose entry
	// changed.
	entry any
	work  *dispatch.Work     // a work queue's dispatcher, or nil
	out   *dispatch.Outbound // an outbound queue's dispatcher, or nil
	// wm and om are the queue's metrics, resolved once (one of them).
	wm *metrics.QueueMetrics
	om *metrics.OutboundMetrics
	// destURL is an outbound queue's destination broker; "": the relay's.
	destURL string
	dest    *broker.Conn      // the destination connection, when destURL is set
	pub     *broker.Publisher // publishes to the destination

	consumer *broker.Consumer
	gate     *intake.Gate
}

// workEntry is what a work queue is built from.
type workEntry struct {
	config.Work
	Concurrency int
}

func (r *Relay) newWorkQueue(cfg *config.Config, w config.Work) *queue {
	t := r.targets[w.Target]
	q := &queue{
		name: w.Queue, breaker: cfg.Targets[w.Target].Breaker, prefetch: w.Prefetch, queueType: w.QueueType,
		entry: workEntry{w, cfg.Targets[w.Target].Concurrency},
	}
	q.wm = r.metrics.Queue(w.Queue, w.Target)
	q.work = dispatch.NewWork(dispatch.WorkSpec{
		Queue: w.Queue, Target: t, Redelivery: w.Redelivery,
		Prefetch: w.Prefetch, Concurrency: cfg.Targets[w.Target].Concurrency,
		Publisher: lazyPublisher{&r.pub}, Metrics: q.wm, Logger: r.log,
		DeadLettered: r.deadLettered, DeliveryLimit: w.DeliveryLimit,
	})
	return q
}

func (r *Relay) newOutboundQueue(o config.Outbound) *queue {
	q := &queue{name: o.Queue, breaker: o.Breaker, prefetch: o.Prefetch, queueType: o.QueueType, entry: o, destURL: o.URL}
	q.om = r.metrics.Outbound(o.Queue)
	q.out = dispatch.NewOutbound(dispatch.OutboundSpec{
		Queue: o.Queue, Exchanges: o.Exchanges, Prefetch: o.Prefetch,
		Guard:       r.guard(o.Breaker, o.Bulkhead),
		Destination: lazyPublisher{&q.pub}, Publisher: lazyPublisher{&r.pub},
		Metrics: q.om, Logger: r.log, DeadLettered: r.deadLettered,
		DeliveryLimit: o.DeliveryLimit,
	})
	return q
}

// topology is what q needs declared on the relay's broker.
func (q *queue) topology() broker.Topology {
	if q.work != nil {
		return q.work.Topology(q.queueType)
	}
	t := q.out.Topology(q.queueType)
	if q.destURL == "" {
		t.Add(q.out.DestinationTopology())
	}
	return t
}

// lazyPublisher publishes through the *broker.Publisher at p, which is set
// when the relay connects, before any delivery is taken.
type lazyPublisher struct{ p **broker.Publisher }

func (l lazyPublisher) Publish(ctx context.Context, exchange, key string, mandatory bool, msg amqp.Publishing) (*broker.Confirmation, error) {
	return (*l.p).Publish(ctx, exchange, key, mandatory, msg)
}

// startQueue connects q's destination when it has one of its own, starts
// its dispatcher, and a consumer for it behind a gate that its breaker and
// the connections it publishes on drive. Closing them is pushed onto the
// cleanup stack.
func (r *Relay) startQueue(ctx context.Context, q *queue) error {
	publishers := []*broker.Conn{r.publishConn}
	q.pub = r.pub
	if q.out != nil && q.destURL != "" {
		dt := q.out.DestinationTopology()
		opts := r.connOptions("outbound "+q.name, q.destURL, func(conn *amqp.Connection) error {
			return dt.Declare(conn, r.log)
		})
		dest, err := r.dial(ctx, opts)
		if err != nil {
			return fmt.Errorf("outbound %s destination: %w", q.name, err)
		}
		r.watchConn(dest, intake.ConnHolds{Blocked: intake.HoldDestBlocked, Down: intake.HoldDestDown})
		pub := r.publisher(dest)
		r.mu.Lock()
		q.dest, q.pub = dest, pub
		r.mu.Unlock()
		publishers = append(publishers, dest)
	}
	var deliver func(amqp.Delivery)
	if q.work != nil {
		q.work.Start(r.stop, r.inflight)
		r.cleanup.push(q.work.Stop)
		deliver = q.work.Deliver
	} else {
		q.out.Start(r.stop, r.inflight)
		r.cleanup.push(q.out.Stop)
		deliver = q.out.Deliver
	}
	c, err := r.consumeConn.Consume(broker.ConsumerOptions{Queue: q.name, Prefetch: q.prefetch, Paused: true},
		func(d broker.Delivery) { deliver(d.Delivery) })
	if err != nil {
		return err
	}
	r.cleanup.push(c.Close)
	if q.work != nil {
		q.work.SetIntake(c)
	} else {
		q.out.SetIntake(c)
	}
	gate := intake.NewGate(c, q.prefetch)
	r.mu.Lock()
	q.consumer, q.gate = c, gate
	if r.paused[q.name] {
		gate.Set(intake.HoldOperator, true)
	}
	for _, pc := range publishers {
		r.conns.Add(pc, gate)
	}
	follower := r.followers[q.breaker]
	r.mu.Unlock()
	follower.Add(gate)
	if gate.Holds() == 0 {
		gate.Set(0, false) // open: consume at the full prefetch
	}
	return nil
}

// wait returns once every delivery q took has been settled.
func (q *queue) wait() {
	if q.work != nil {
		q.work.Wait()
		return
	}
	q.out.Wait()
}

// retire stops a queue a reload removed or replaced, while the others go
// on: its intake stops, its tasks in hand finish (for at most
// shutdown_timeout; what is left goes back to the broker), then its
// consumer, dispatcher and own destination close.
func (r *Relay) retire(q *queue) {
	r.retiring.Add(1)
	go func() {
		defer r.retiring.Done()
		timeout := r.config().ShutdownTimeout
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		q.consumer.CancelAndDrain(ctx)
		done := make(chan struct{})
		go func() { q.wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			r.log.Warn("a removed queue's tasks did not finish within shutdown_timeout; they go back to the broker", "queue", q.name)
		case <-time.After(timeout + time.Second):
		}
		q.consumer.Close()
		if q.work != nil {
			q.work.Stop()
		} else {
			q.out.Stop()
		}
		if q.dest != nil {
			_ = q.dest.Close()
		}
		r.mu.RLock()
		follower := r.followers[q.breaker]
		r.mu.RUnlock()
		if follower != nil {
			follower.Remove(q.gate)
		}
		r.conns.Remove(q.gate)
		r.log.Info("queue stopped", "queue", q.name)
	}()
}

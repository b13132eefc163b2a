package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/backoff"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/metrics"
)

// outboundPolicy paces retries of a publish the destination did not
// confirm; after it the message goes back to the broker.
var outboundPolicy = backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: backoff.Full, MaxRetries: 3}

// OutboundSpec describes an outbound-publish queue for NewOutbound.
type OutboundSpec struct {
	Queue string
	// Exchanges are the only exchanges a message may be sent to.
	Exchanges []string
	Prefetch  int
	// Guard protects the destination: its bulkhead slot and breaker
	// permit are held from publish to confirm.
	Guard Guard
	// Destination publishes to the destination broker; Publisher publishes
	// dead letters on the relay's own broker. They may be the same.
	Destination Publisher
	Publisher   Publisher
	Metrics     *metrics.OutboundMetrics
	Logger      *slog.Logger
	// DeadLettered is told of every dead letter once it is confirmed.
	DeadLettered func(queue, reason string)
	// DeliveryLimit dead-letters a message that comes again after this
	// many deliveries ended without an outcome. Zero: no limit.
	DeliveryLimit int
	// Sleep waits between publishes of a message its destination did not
	// confirm, ending early with ctx's error. Nil: backoff.Sleep.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Outbound consumes one outbound-publish queue and publishes each message
// to its destination exchange. Make one with NewOutbound; hand it
// deliveries with Deliver between Start and Stop.
//
// It runs as a two-stage pipeline. One goroutine (a pool of one worker)
// checks each delivery, takes its guard and publishes it without waiting;
// another reads the confirms in publish order, which is the order they
// come in, and settles each delivery as its confirm arrives, so that acks
// leave in delivery order and coalesce into multiple acks. Anything but a
// confirm (a message to dead-letter, a publish to try again) is finished
// aside on a goroutine of its own, off the pipeline.
type Outbound struct {
	queue    string
	prefetch int
	allowed  map[string]bool
	allowTxt string
	guard    Guard
	dest     Publisher
	settle   settler
	m        *metrics.OutboundMetrics
	log      *slog.Logger
	sleep    func(ctx context.Context, d time.Duration) error

	stop    context.Context
	workers *pool             // the pipeline's first stage
	calls   chan outboundCall // published, confirm not read yet
	stopped chan struct{}     // closed by Stop
	pending sync.WaitGroup    // deliveries past the first stage, not yet settled
}

// NewOutbound returns the outbound-publish queue s describes.
func NewOutbound(s OutboundSpec) *Outbound {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("queue", s.Queue)
	m := s.Metrics
	if m == nil {
		var detached *metrics.Metrics
		m = detached.Outbound(s.Queue)
	}
	o := &Outbound{
		queue:    s.Queue,
		prefetch: max(1, s.Prefetch),
		allowed:  make(map[string]bool, len(s.Exchanges)),
		guard:    s.Guard,
		dest:     s.Destination,
		settle: settler{
			queue: s.Queue, dlq: DeadLetterQueueName(s.Queue), pub: s.Publisher, log: log,
			deadLettered: s.DeadLettered, limit: s.DeliveryLimit,
			counts: Counters{
				Forwarded: m.Published, Returned: m.Returned, DeadLettered: m.DeadLettered, Requeued: m.Requeued,
				Recounted: m.Recounted,
			},
		},
		m:     m,
		log:   log,
		sleep: s.Sleep,
	}
	if o.sleep == nil {
		o.sleep = backoff.Sleep
	}
	names := append([]string(nil), s.Exchanges...)
	sort.Strings(names)
	for _, x := range names {
		o.allowed[x] = true
	}
	o.allowTxt = strings.Join(names, ", ")
	return o
}

// SetIntake tells the queue its consumer: what it publishes back to the
// queue waits for that consumer's cancels (see Intake). Call it before
// the consumer takes deliveries.
func (o *Outbound) SetIntake(in Intake) { o.settle.intake.Store(&intakeOf{in}) }

// Queue returns the outbound queue's name.
func (o *Outbound) Queue() string { return o.queue }

// Topology is what the queue needs on the relay's own broker: itself and
// its .dlq, of queueType (classic or quorum; "" is classic).
func (o *Outbound) Topology(queueType string) broker.Topology {
	args := QueueArgs(queueType)
	return broker.Topology{Queues: []broker.Queue{{Name: o.queue, Args: args}, {Name: o.settle.dlq, Args: args}}}
}

// DestinationTopology is what the destination broker needs: every allowed
// exchange, declared as a durable topic exchange when it does not exist,
// so that an allowed publish can never close the channel with a 404.
func (o *Outbound) DestinationTopology() broker.Topology {
	var t broker.Topology
	for x := range o.allowed {
		t.Exchanges = append(t.Exchanges, x)
	}
	sort.Strings(t.Exchanges)
	return t
}

// Start runs the pipeline. stop ends when the relay stops taking work;
// work bounds every publish and ends when in-flight work must be given up.
func (o *Outbound) Start(stop, work context.Context) {
	o.stop = stop
	o.calls = make(chan outboundCall, o.prefetch)
	o.stopped = make(chan struct{})
	go o.settleLoop(work)
	o.workers = newPool(work, 1, o.prefetch, o.send)
}

// Deliver hands a message to the pipeline. It is the consumer's handler:
// it never blocks.
func (o *Outbound) Deliver(d amqp.Delivery) { o.workers.submit(d) }

// Wait returns when every delivery taken has been settled.
func (o *Outbound) Wait() {
	o.workers.wait()
	o.pending.Wait()
}

// Stop ends the pipeline; deliveries not yet settled go back to the
// broker with their channel.
func (o *Outbound) Stop() {
	if o.workers == nil {
		return
	}
	select {
	case <-o.stopped:
	default:
		close(o.stopped)
	}
	o.workers.stop()
}

// outboundCall is a publish whose confirm has not been read yet.
type outboundCall struct {
	d             amqp.Delivery
	exchange, key string
	msg           amqp.Publishing
	conf          *broker.Confirmation
	ticket        ticket
	start         time.Time
}

// send starts one delivery's publish: the first stage of the pipeline.
func (o *Outbound) send(ctx context.Context, d amqp.Delivery) {
	if !broker.Live(d.Acknowledger) {
		o.settle.settle(ctx, &d, Outcome{Kind: Stale})
		return
	}
	if out, ok := o.settle.redelivered(&d); ok {
		o.pending.Add(1)
		go o.settleAside(ctx, d, out)
		return
	}
	if o.stop.Err() != nil {
		o.settle.settle(ctx, &d, Outcome{Kind: Requeue, Reason: "shutting down"})
		return
	}
	exchange, key, problem := o.destination(d.Headers)
	if problem != "" {
		o.pending.Add(1)
		go o.refuse(ctx, d, problem)
		return
	}
	c := outboundCall{d: d, exchange: exchange, key: key, msg: outboundMessage(&d)}
	t, err := o.guard.enter(ctx)
	if err != nil {
		if errors.Is(err, errBreakerOpen) {
			o.settle.settle(ctx, &d, Outcome{Kind: Requeue, Reason: "breaker " + o.guard.Breaker.Name() + " is open"})
			return
		}
		o.aside(ctx, c, err)
		return
	}
	c.ticket, c.start = t, time.Now()
	if c.conf, err = o.dest.Publish(ctx, exchange, key, true, c.msg); err != nil {
		outcome, reason := o.outcome(ctx, c.start, err)
		o.guard.exit(t, outcome, reason)
		o.aside(ctx, c, err)
		return
	}
	o.pending.Add(1)
	select {
	case o.calls <- c:
	case <-o.stopped:
		// Stopped: the delivery stays unacked and goes back to the queue
		// when its channel closes.
		o.guard.exit(t, breaker.Neutral, nil)
		o.pending.Done()
	}
}

// settleLoop is the pipeline's second stage: it settles each publish as
// its confirm arrives, in publish order.
func (o *Outbound) settleLoop(ctx context.Context) {
	for {
		select {
		case c := <-o.calls:
			o.settleCall(ctx, c)
		case <-o.stopped:
			return
		}
	}
}

func (o *Outbound) settleCall(ctx context.Context, c outboundCall) {
	var err error
	select {
	case <-c.conf.Done():
		err = c.conf.Err()
	case <-ctx.Done():
		err = ctx.Err()
	}
	outcome, reason := o.outcome(ctx, c.start, err)
	o.guard.exit(c.ticket, outcome, reason)
	if err == nil {
		o.settle.settle(ctx, &c.d, Outcome{Kind: Forwarded})
		o.pending.Done()
		return
	}
	go o.finish(ctx, c, err) // pending passes to finish
}

// aside finishes a publish off the pipeline, on a goroutine of its own.
// (The slow paths are functions of their own, with the call passed by
// value, so that the common path leaves nothing on the heap.)
func (o *Outbound) aside(ctx context.Context, c outboundCall, err error) {
	o.pending.Add(1)
	go o.finish(ctx, c, err)
}

func (o *Outbound) finish(ctx context.Context, c outboundCall, err error) {
	defer o.pending.Done()
	o.settle.settle(ctx, &c.d, o.retry(ctx, c.exchange, c.key, c.msg, err))
}

// refuse dead-letters a delivery that cannot be published, for problem.
func (o *Outbound) refuse(ctx context.Context, d amqp.Delivery, problem string) {
	o.settleAside(ctx, d, Outcome{Kind: DeadLetter, Reason: problem})
}

// settleAside settles d off the pipeline.
func (o *Outbound) settleAside(ctx context.Context, d amqp.Delivery, out Outcome) {
	defer o.pending.Done()
	o.settle.settle(ctx, &d, out)
}

// retry decides the outcome of a message whose publish ended in err,
// publishing again (paced by outboundPolicy) while that may still get it
// confirmed.
func (o *Outbound) retry(ctx context.Context, exchange, key string, msg amqp.Publishing, err error) Outcome {
	bo := outboundPolicy.Start()
	for {
		switch {
		case err == nil:
			return Outcome{Kind: Forwarded}
		case errors.Is(err, broker.ErrReturned):
			return Outcome{Kind: DeadLetter, Returned: true, Reason: err.Error()}
		case errors.Is(err, errBreakerOpen):
			return Outcome{Kind: Requeue, Reason: "breaker " + o.guard.Breaker.Name() + " is open"}
		case ctx.Err() != nil:
			return Outcome{Kind: Requeue, Reason: "shutting down"}
		case errors.Is(err, errProbeBusy):
			if o.sleep(o.stop, probeWait) != nil {
				return Outcome{Kind: Requeue, Reason: "shutting down"}
			}
			err = o.publishOnce(ctx, exchange, key, msg)
			continue
		}
		if errors.Is(err, broker.ErrNacked) {
			o.m.Nacked.Inc()
		}
		delay, ok := bo.Next()
		if !ok || o.sleep(o.stop, delay) != nil {
			o.log.Warn("outbound publish not confirmed; message goes back to the queue", "err", err.Error())
			return Outcome{Kind: Requeue, Reason: "not confirmed by the destination: " + err.Error()}
		}
		err = o.publishOnce(ctx, exchange, key, msg)
	}
}

// outboundMessage is d as it goes to its destination: the relay's own
// headers stripped, persistent.
func outboundMessage(d *amqp.Delivery) amqp.Publishing {
	msg := broker.PublishingOf(d, copyHeaders(d.Headers, 0))
	msg.DeliveryMode = amqp.Persistent
	return msg
}

// destination reads and checks the x-relay-exchange and
// x-relay-routing-key headers; problem says what is wrong with them.
func (o *Outbound) destination(h amqp.Table) (exchange, key, problem string) {
	for _, name := range []string{HeaderExchange, HeaderRoutingKey} {
		v, present := h[name]
		if !present {
			return "", "", fmt.Sprintf("missing header %s", name)
		}
		s, ok := stringHeader(h, name)
		if !ok {
			return "", "", fmt.Sprintf("header %s must be a string, got %T", name, v)
		}
		if name == HeaderExchange {
			exchange = s
		} else {
			key = s
		}
	}
	if !o.allowed[exchange] {
		return "", "", fmt.Sprintf("exchange %q is not allowed for outbound queue %s (allowed: %s)", exchange, o.queue, o.allowTxt)
	}
	if len(key) > 255 {
		return "", "", fmt.Sprintf("routing key of %d bytes is over AMQP's 255", len(key))
	}
	return exchange, key, ""
}

// publishOnce publishes through the guard and waits for the confirm.
func (o *Outbound) publishOnce(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	var err error
	if gerr := o.guard.run(ctx, func() (breaker.Outcome, error) {
		start := time.Now()
		var conf *broker.Confirmation
		if conf, err = o.dest.Publish(ctx, exchange, key, true, msg); err == nil {
			err = conf.Wait(ctx)
		}
		return o.outcome(ctx, start, err)
	}); gerr != nil {
		return gerr
	}
	return err
}

// outcome is what a publish that started at start and ended in err tells
// the breaker. An unroutable return counts as the destination's success:
// it answered, and routing is the sender's problem.
func (o *Outbound) outcome(ctx context.Context, start time.Time, err error) (breaker.Outcome, error) {
	switch {
	case err == nil:
		o.m.ConfirmLatency.Observe(time.Since(start).Seconds())
		return breaker.Success, nil
	case errors.Is(err, broker.ErrReturned):
		return breaker.Success, nil
	case ctx.Err() != nil:
		return breaker.Neutral, nil
	}
	return breaker.Failure, err
}

package relay

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
	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/metrics"
)

// outboundPolicy paces retries of a publish the destination did not
// confirm; after it the message goes back to the broker.
var outboundPolicy = backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: backoff.Full, MaxRetries: 3}

// outboundQueue consumes one outbound-publish queue and publishes each
// message to its destination exchange.
type outboundQueue struct {
	r        *Relay
	queue    string
	dlq      string
	prefetch int
	allowed  map[string]bool
	allowTxt string
	dest     *broker.Conn // nil: the relay's own publish connection
	destURL  string
	pub      *broker.Publisher
	guard
	m   *metrics.OutboundMetrics
	log *slog.Logger

	consumer *broker.Consumer
	workers  *pool             // the pipeline's first stage
	calls    chan outboundCall // published, confirm not read yet
	stopped  chan struct{}     // closed by stop
	pending  sync.WaitGroup    // deliveries past the first stage, not yet settled
}

func newOutboundQueue(r *Relay, o config.Outbound) *outboundQueue {
	oq := &outboundQueue{
		r:        r,
		queue:    o.Queue,
		dlq:      o.Queue + ".dlq",
		prefetch: o.Prefetch,
		allowed:  make(map[string]bool, len(o.Exchanges)),
		destURL:  o.URL,
		guard: guard{
			breaker:  r.breakers[o.Breaker],
			bulkhead: r.bulkheads[o.Bulkhead],
			poolWait: r.metrics.BulkheadWait(o.Bulkhead),
			onReject: r.bulkheadRejected,
		},
		m:   r.metrics.Outbound(o.Queue),
		log: r.log.With("queue", o.Queue),
	}
	names := append([]string(nil), o.Exchanges...)
	sort.Strings(names)
	for _, x := range names {
		oq.allowed[x] = true
	}
	oq.allowTxt = strings.Join(names, ", ")
	return oq
}

func (o *outboundQueue) declare(d *declarer) error {
	if err := d.queue(o.queue, nil); err != nil {
		return err
	}
	return d.queue(o.dlq, nil)
}

// declareDestination makes sure every allowed exchange exists on the
// destination, declaring a durable topic exchange for any that does not,
// so that an allowed publish can never close the channel with a 404.
func (o *outboundQueue) declareDestination(d *declarer) error {
	for x := range o.allowed {
		declared, err := d.ensureExchange(x)
		if err != nil {
			return err
		}
		if declared {
			o.log.Info("declared missing outbound exchange", "exchange", x, "type", "topic")
		}
	}
	return nil
}

// start runs the queue's pipeline. One goroutine (a pool of one worker)
// checks each delivery, takes its guard and publishes it without waiting;
// another reads the confirms in publish order, which is the order they
// come in, and settles each delivery as its confirm arrives, so that acks
// leave in delivery order and coalesce into multiple acks. Bulkhead slots
// and breaker permits are held from publish to confirm, as a call waiting
// on the destination. Anything but a confirm (a message to dead-letter, a
// publish to try again) is finished aside on a goroutine of its own, off
// the pipeline.
func (o *outboundQueue) start() {
	o.calls = make(chan outboundCall, max(1, o.prefetch))
	o.stopped = make(chan struct{})
	go o.settleLoop(o.r.workCtx)
	o.workers = newPool(o.r.workCtx, 1, o.prefetch, o.send)
}

func (o *outboundQueue) onDelivery(d broker.Delivery) { o.workers.submit(d) }

// wait returns when every delivery taken has been settled.
func (o *outboundQueue) wait() {
	o.workers.wait()
	o.pending.Wait()
}

// stop ends the pipeline; deliveries not yet settled stay unacked.
func (o *outboundQueue) stop() {
	select {
	case <-o.stopped:
	default:
		close(o.stopped)
	}
	o.workers.stop()
}

// outboundCall is a publish whose confirm has not been read yet.
type outboundCall struct {
	d             broker.Delivery
	exchange, key string
	msg           amqp.Publishing
	conf          *broker.Confirmation
	ticket        ticket
	start         time.Time
}

// send starts one delivery's publish: the first stage of the pipeline.
func (o *outboundQueue) send(ctx context.Context, d broker.Delivery) {
	select {
	case <-o.r.stopping:
		o.requeue(d)
		return
	default:
	}
	exchange, key, problem := o.destination(d.Headers)
	if problem != "" {
		o.pending.Add(1)
		go o.refuse(ctx, d, problem)
		return
	}
	c := outboundCall{d: d, exchange: exchange, key: key, msg: outboundMessage(d)}
	t, err := o.enter(ctx)
	if err != nil {
		if errors.Is(err, errBreakerOpen) {
			o.requeue(d)
			return
		}
		o.aside(ctx, c, err)
		return
	}
	c.ticket, c.start = t, time.Now()
	if c.conf, err = o.pub.Publish(ctx, exchange, key, true, c.msg); err != nil {
		outcome, reason := o.outcome(ctx, c.start, err)
		o.exit(t, outcome, reason)
		o.aside(ctx, c, err)
		return
	}
	o.pending.Add(1)
	select {
	case o.calls <- c:
	case <-o.stopped:
		// Stopped: the delivery stays unacked and goes back to the queue
		// when its channel closes.
		o.exit(t, breaker.Neutral, nil)
		o.pending.Done()
	}
}

// settleLoop is the pipeline's second stage: it settles each publish as
// its confirm arrives, in publish order.
func (o *outboundQueue) settleLoop(ctx context.Context) {
	for {
		select {
		case c := <-o.calls:
			o.settleCall(ctx, c)
		case <-o.stopped:
			return
		}
	}
}

func (o *outboundQueue) settleCall(ctx context.Context, c outboundCall) {
	var err error
	select {
	case <-c.conf.Done():
		err = c.conf.Err()
	case <-ctx.Done():
		err = ctx.Err()
	}
	outcome, reason := o.outcome(ctx, c.start, err)
	o.exit(c.ticket, outcome, reason)
	if err == nil {
		o.m.Published.Inc()
		o.settleAck(c.d)
		o.pending.Done()
		return
	}
	go o.finish(ctx, c, err) // pending passes to finish
}

// aside finishes a publish off the pipeline, on a goroutine of its own.
// (The slow paths are functions of their own, with the call passed by
// value, so that the common path leaves nothing on the heap.)
func (o *outboundQueue) aside(ctx context.Context, c outboundCall, err error) {
	o.pending.Add(1)
	go o.finish(ctx, c, err)
}

func (o *outboundQueue) finish(ctx context.Context, c outboundCall, err error) {
	defer o.pending.Done()
	o.attempts(ctx, c.d, c.exchange, c.key, c.msg, err)
}

// refuse dead-letters a delivery that cannot be published, for problem.
func (o *outboundQueue) refuse(ctx context.Context, d broker.Delivery, problem string) {
	defer o.pending.Done()
	o.settle(d, o.deadLetter(ctx, d, problem))
}

// attempts acts on the outcome err of a publish of d, publishing again
// (paced by outboundPolicy) until it is confirmed, dead-lettered or given
// back to the queue.
func (o *outboundQueue) attempts(ctx context.Context, d broker.Delivery, exchange, key string, msg amqp.Publishing, err error) {
	bo := outboundPolicy.Start()
	for {
		switch {
		case err == nil:
			o.m.Published.Inc()
			o.settleAck(d)
			return
		case errors.Is(err, broker.ErrReturned):
			o.m.Returned.Inc()
			o.settle(d, o.deadLetter(ctx, d, err.Error()))
			return
		case errors.Is(err, errBreakerOpen), ctx.Err() != nil:
			o.requeue(d)
			return
		case errors.Is(err, errProbeBusy):
			if backoff.Sleep(o.r.softCtx, 50*time.Millisecond) != nil {
				o.requeue(d)
				return
			}
			err = o.publishOnce(ctx, exchange, key, msg)
			continue
		}
		if errors.Is(err, broker.ErrNacked) {
			o.m.Nacked.Inc()
		}
		delay, ok := bo.Next()
		if !ok || backoff.Sleep(o.r.softCtx, delay) != nil {
			o.log.Warn("outbound publish not confirmed; message goes back to the queue", "err", err.Error())
			o.requeue(d)
			return
		}
		err = o.publishOnce(ctx, exchange, key, msg)
	}
}

// outboundMessage is d as it goes to its destination: the relay's own
// headers stripped, persistent.
func outboundMessage(d broker.Delivery) amqp.Publishing {
	msg := publishingOf(d, copyHeaders(d.Headers, 0))
	msg.DeliveryMode = amqp.Persistent
	return msg
}

// destination reads and checks the x-relay-exchange and
// x-relay-routing-key headers; problem says what is wrong with them.
func (o *outboundQueue) destination(h amqp.Table) (exchange, key, problem string) {
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
func (o *outboundQueue) publishOnce(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	var err error
	if gerr := o.run(ctx, func() (breaker.Outcome, error) {
		start := time.Now()
		var conf *broker.Confirmation
		if conf, err = o.pub.Publish(ctx, exchange, key, true, msg); err == nil {
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
func (o *outboundQueue) outcome(ctx context.Context, start time.Time, err error) (breaker.Outcome, error) {
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

func (o *outboundQueue) deadLetter(ctx context.Context, d broker.Delivery, reason string) error {
	h := make(amqp.Table, len(d.Headers)+2)
	for k, v := range d.Headers {
		h[k] = v
	}
	h[HeaderError] = reason
	h[HeaderQueue] = o.queue
	if err := o.r.pub.PublishAndWait(ctx, "", o.dlq, true, publishingOf(d, h)); err != nil {
		return fmt.Errorf("dead-lettering to %s: %w", o.dlq, err)
	}
	o.m.DeadLettered.Inc()
	o.log.Warn("outbound message dead-lettered", "reason", reason, "message_id", d.MessageId)
	o.r.deadLettered(o.queue, reason)
	return nil
}

func (o *outboundQueue) settle(d broker.Delivery, published error) {
	if published != nil {
		o.log.Warn("dead letter not confirmed; message goes back to the queue", "err", published.Error())
		o.requeue(d)
		return
	}
	o.settleAck(d)
}

func (o *outboundQueue) settleAck(d broker.Delivery) {
	if err := d.Ack(); err != nil {
		o.log.Warn("ack failed after publishing; the message will be delivered again", "err", err.Error())
	}
}

func (o *outboundQueue) requeue(d broker.Delivery) {
	if err := d.Requeue(); err != nil && !errors.Is(err, broker.ErrStale) {
		o.log.Warn("requeue failed", "err", err.Error())
	}
}

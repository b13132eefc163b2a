package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/backoff"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/bulkhead"
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
	breaker  *breaker.Breaker
	bulkhead *bulkhead.Bulkhead
	m        *metrics.OutboundMetrics
	log      *slog.Logger

	consumer *broker.Consumer
	workers  *pool
}

func newOutboundQueue(r *Relay, o config.Outbound) *outboundQueue {
	oq := &outboundQueue{
		r:        r,
		queue:    o.Queue,
		dlq:      o.Queue + ".dlq",
		prefetch: o.Prefetch,
		allowed:  make(map[string]bool, len(o.Exchanges)),
		destURL:  o.URL,
		breaker:  r.breakers[o.Breaker],
		bulkhead: r.bulkheads[o.Bulkhead],
		m:        r.metrics.Outbound(o.Queue),
		log:      r.log.With("queue", o.Queue),
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

// start runs the queue's workers: as many as its bulkhead has slots.
func (o *outboundQueue) start() {
	n := o.bulkhead.Stats().Capacity
	o.workers = newPool(o.r.workCtx, n, o.prefetch, o.handle)
}

func (o *outboundQueue) onDelivery(d broker.Delivery) { o.workers.submit(d) }

// handle publishes one outbound message and settles it: acked only after
// the destination confirmed it, or after it was dead-lettered.
func (o *outboundQueue) handle(ctx context.Context, d broker.Delivery) {
	select {
	case <-o.r.stopping:
		o.requeue(d)
		return
	default:
	}
	exchange, key, problem := o.destination(d.Headers)
	if problem != "" {
		o.settle(d, o.deadLetter(ctx, d, problem))
		return
	}
	msg := publishingOf(d, copyHeaders(d.Headers, 0))
	msg.DeliveryMode = amqp.Persistent

	bo := outboundPolicy.Start()
	for {
		err := o.publishOnce(ctx, exchange, key, msg)
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
	}
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

// publishOnce runs one protected publish: a bulkhead slot, a breaker
// permit, the publish and its confirm.
func (o *outboundQueue) publishOnce(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	h, err := o.bulkhead.Checkout(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		o.r.bulkheadRejected(o.bulkhead, err)
		return fmt.Errorf("bulkhead %s rejected the message (%s)", o.bulkhead.Name(), bulkhead.Reason(err))
	}
	defer o.bulkhead.Checkin(h)
	p, err := o.breaker.Allow()
	if err != nil {
		if errors.Is(err, breaker.ErrTooManyProbes) {
			return errProbeBusy
		}
		return errBreakerOpen
	}
	start := time.Now()
	conf, err := o.pub.Publish(ctx, exchange, key, true, msg)
	if err == nil {
		err = conf.Wait(ctx)
	}
	switch {
	case err == nil:
		o.m.ConfirmLatency.Observe(time.Since(start).Seconds())
		o.breaker.Done(p, breaker.Success, nil)
	case errors.Is(err, broker.ErrReturned):
		// The destination answered: routing is the sender's problem.
		o.breaker.Done(p, breaker.Success, nil)
	case ctx.Err() != nil:
		o.breaker.Done(p, breaker.Neutral, nil)
	default:
		o.breaker.Done(p, breaker.Failure, err)
	}
	return err
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

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

// publishOnce publishes through the guard and waits for the confirm. An
// unroutable return counts as the destination's success: it answered,
// and routing is the sender's problem.
func (o *outboundQueue) publishOnce(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	var err error
	if gerr := o.run(ctx, func() (breaker.Outcome, error) {
		start := time.Now()
		var conf *broker.Confirmation
		if conf, err = o.pub.Publish(ctx, exchange, key, true, msg); err == nil {
			err = conf.Wait(ctx)
		}
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
	}); gerr != nil {
		return gerr
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

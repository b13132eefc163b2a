package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/backoff"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/config"
	"github.com/vsm-relay/relay/metrics"
)

// workQueue consumes one work queue and runs its tasks against a target.
type workQueue struct {
	r        *Relay
	queue    string
	dlq      string
	delays   []delayStep
	target   *target
	prefetch int
	m        *metrics.QueueMetrics
	log      *slog.Logger

	consumer    *broker.Consumer
	concurrency int // the target's concurrency for this queue
	workers     *pool
}

// delayStep is one delayed redelivery: a queue whose TTL dead-letters
// messages back to the work queue.
type delayStep struct {
	delay time.Duration
	queue string
}

func newWorkQueue(r *Relay, w config.Work, t *target) *workQueue {
	wq := &workQueue{
		r:           r,
		queue:       w.Queue,
		dlq:         w.Queue + ".dlq",
		target:      t,
		prefetch:    w.Prefetch,
		m:           r.metrics.Queue(w.Queue, t.name),
		log:         r.log.With("queue", w.Queue, "target", t.name),
		concurrency: max(1, r.cfg.Targets[t.name].Concurrency),
	}
	for _, d := range w.Redelivery {
		wq.delays = append(wq.delays, delayStep{delay: d, queue: DelayQueueName(w.Queue, d)})
	}
	return wq
}

// DelayQueueName is the queue that holds a work queue's tasks for a
// redelivery step of delay d before they go back: "<queue>.delay.<d>",
// d written compactly (5s, 2m, 1h, 1500ms). It is named by its delay, so
// a changed configuration declares a new queue instead of clashing with
// the old one's TTL.
func DelayQueueName(queue string, d time.Duration) string {
	return queue + ".delay." + compactDuration(d)
}

func compactDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	default:
		return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
	}
}

// declare declares the work queue, its dead-letter queue and its delay
// queues.
func (w *workQueue) declare(d *declarer) error {
	if err := d.queue(w.queue, nil); err != nil {
		return err
	}
	if err := d.queue(w.dlq, nil); err != nil {
		return err
	}
	for _, s := range w.delays {
		args := amqp.Table{
			"x-message-ttl":             int64(s.delay / time.Millisecond),
			"x-dead-letter-exchange":    "",
			"x-dead-letter-routing-key": w.queue,
		}
		if err := d.queue(s.queue, args); err != nil {
			return err
		}
	}
	return nil
}

// start runs the queue's workers: as many as the target's concurrency.
func (w *workQueue) start() {
	w.workers = newPool(w.r.workCtx, w.concurrency, w.prefetch, func(ctx context.Context, d broker.Delivery) {
		start := time.Now()
		w.handle(ctx, d)
		w.m.Duration.Observe(time.Since(start).Seconds())
		w.m.InFlight.Dec()
	})
}

// onDelivery is the consumer's handler: it hands each task to a worker.
func (w *workQueue) onDelivery(d broker.Delivery) {
	w.m.InFlight.Inc()
	w.workers.submit(d)
}

// handle runs one task to its outcome and settles the delivery. The
// delivery is acked only after the outcome (reply, dead letter or delayed
// redelivery) is confirmed by the broker; anything else gives it back.
func (w *workQueue) handle(ctx context.Context, d broker.Delivery) {
	select {
	case <-w.r.stopping:
		w.requeue(d, "shutting down")
		return
	default:
	}
	tk := &task{
		body:          d.Body,
		contentType:   d.ContentType,
		correlationID: d.CorrelationId,
		messageID:     d.MessageId,
	}
	tk.traceparent, _ = stringHeader(d.Headers, HeaderTraceparent)
	tk.tracestate, _ = stringHeader(d.Headers, HeaderTracestate)
	attempts := intHeader(d.Headers, HeaderAttempts)
	redeliveries := intHeader(d.Headers, HeaderRedeliveries)

	if int64(len(d.Body)) > w.target.maxReq {
		reason := fmt.Sprintf("task body of %d bytes is over target %s's limit of %d bytes", len(d.Body), w.target.name, w.target.maxReq)
		w.settle(d, w.deadLetter(ctx, d, 0, attempts, reason), w.m.DeadLettered)
		return
	}

	bo := w.target.policy.Start()
	for {
		res, err := w.target.attempt(ctx, tk)
		switch {
		case errors.Is(err, errBreakerOpen):
			// The breaker opened: the task goes back untouched (no
			// attempt spent) and intake pauses until it half-opens.
			w.requeue(d, "breaker "+w.target.breaker.Name()+" is open")
			return
		case errors.Is(err, errProbeBusy):
			if backoff.Sleep(w.r.softCtx, 50*time.Millisecond) != nil {
				w.requeue(d, "shutting down")
				return
			}
			continue
		case err != nil:
			w.requeue(d, "shutting down")
			return
		}
		if !res.local {
			attempts++
		}
		switch res.kind {
		case kindSuccess:
			w.settle(d, w.reply(ctx, d, res, attempts), w.m.Replied)
			return
		case kindPermanent:
			w.settle(d, w.deadLetter(ctx, d, res.status, attempts, res.reason), w.m.DeadLettered)
			return
		}
		delay, ok := bo.NextAfter(res.retryAfter)
		if ok {
			w.m.Retries.Inc()
			if backoff.Sleep(w.r.softCtx, delay) != nil {
				w.requeue(d, "shutting down")
				return
			}
			continue
		}
		if redeliveries < len(w.delays) {
			w.settle(d, w.redeliver(ctx, d, redeliveries, attempts, res), w.m.Redelivered)
			return
		}
		w.settle(d, w.deadLetter(ctx, d, res.status, attempts, res.reason), w.m.DeadLettered)
		return
	}
}

// settle acks d when its outcome was published, and gives it back to the
// broker otherwise.
func (w *workQueue) settle(d broker.Delivery, published error, counter interface{ Inc() }) {
	if published != nil {
		w.log.Warn("outcome not confirmed by the broker; task goes back for redelivery", "err", published.Error(), "message_id", d.MessageId)
		w.requeue(d, "outcome not confirmed")
		return
	}
	if err := d.Ack(); err != nil {
		// The channel died after the outcome was published: the broker
		// delivers the task again (at least once).
		w.log.Warn("ack failed after the outcome was published; the task will be delivered again", "err", err.Error(), "message_id", d.MessageId)
		return
	}
	counter.Inc()
}

func (w *workQueue) requeue(d broker.Delivery, why string) {
	w.m.Requeued.Inc()
	if err := d.Requeue(); err != nil && !errors.Is(err, broker.ErrStale) {
		w.log.Warn("requeue failed", "err", err.Error(), "why", why)
	}
}

// reply publishes the downstream's answer to reply_to, when set.
func (w *workQueue) reply(ctx context.Context, d broker.Delivery, res result, attempts int) error {
	if d.ReplyTo == "" {
		return nil
	}
	h := amqp.Table{
		HeaderStatus:   int32(res.status),
		HeaderTarget:   w.target.name,
		HeaderAttempts: int32(attempts),
	}
	copyTrace(d.Headers, h)
	msg := amqp.Publishing{
		ContentType:   res.contentType,
		CorrelationId: d.CorrelationId,
		Headers:       h,
		Body:          res.body,
		DeliveryMode:  d.DeliveryMode,
		Timestamp:     time.Now(),
	}
	return w.r.publishReply(ctx, d.ReplyTo, msg)
}

// deadLetter sends d to <queue>.dlq with the reason, and an error reply
// to reply_to when set; it returns once both are confirmed.
func (w *workQueue) deadLetter(ctx context.Context, d broker.Delivery, status, attempts int, reason string) error {
	h := copyHeaders(d.Headers, 5)
	h[HeaderError] = reason
	h[HeaderAttempts] = int32(attempts)
	h[HeaderTarget] = w.target.name
	h[HeaderQueue] = w.queue
	if status != 0 {
		h[HeaderStatus] = int32(status)
	}
	dead := publishingOf(d, h)
	conf, err := w.r.pub.Publish(ctx, "", w.dlq, true, dead)
	if err != nil {
		return err
	}
	var replyErr error
	if d.ReplyTo != "" {
		rh := amqp.Table{HeaderError: reason, HeaderAttempts: int32(attempts), HeaderTarget: w.target.name}
		if status != 0 {
			rh[HeaderStatus] = int32(status)
		}
		copyTrace(d.Headers, rh)
		replyErr = w.r.publishReply(ctx, d.ReplyTo, amqp.Publishing{
			ContentType:   "text/plain; charset=utf-8",
			CorrelationId: d.CorrelationId,
			Headers:       rh,
			Body:          []byte(reason),
			DeliveryMode:  d.DeliveryMode,
			Timestamp:     time.Now(),
		})
	}
	if err := conf.Wait(ctx); err != nil {
		return fmt.Errorf("dead-lettering to %s: %w", w.dlq, err)
	}
	if replyErr != nil {
		return replyErr
	}
	w.log.Warn("task dead-lettered", "reason", reason, "attempts", attempts, "message_id", d.MessageId)
	w.r.deadLettered(w.queue, reason)
	return nil
}

// redeliver sends d to the delay queue of step, to come back to the work
// queue when its TTL passes.
func (w *workQueue) redeliver(ctx context.Context, d broker.Delivery, step, attempts int, res result) error {
	s := w.delays[step]
	h := copyHeaders(d.Headers, 4)
	h[HeaderAttempts] = int32(attempts)
	h[HeaderRedeliveries] = int32(step + 1)
	h[HeaderError] = res.reason
	if res.status != 0 {
		h[HeaderStatus] = int32(res.status)
	}
	msg := publishingOf(d, h)
	msg.DeliveryMode = amqp.Persistent
	if err := w.r.pub.PublishAndWait(ctx, "", s.queue, true, msg); err != nil {
		return fmt.Errorf("scheduling redelivery through %s: %w", s.queue, err)
	}
	w.log.Info("task scheduled for redelivery", "after", s.delay, "attempts", attempts, "reason", res.reason, "message_id", d.MessageId)
	return nil
}

// publishingOf copies a delivery's properties into a new publishing.
func publishingOf(d broker.Delivery, h amqp.Table) amqp.Publishing {
	return amqp.Publishing{
		Headers:         h,
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		DeliveryMode:    d.DeliveryMode,
		Priority:        d.Priority,
		CorrelationId:   d.CorrelationId,
		ReplyTo:         d.ReplyTo,
		Expiration:      d.Expiration,
		MessageId:       d.MessageId,
		Timestamp:       d.Timestamp,
		Type:            d.Type,
		UserId:          d.UserId,
		AppId:           d.AppId,
		Body:            d.Body,
	}
}

func copyTrace(from, to amqp.Table) {
	for _, k := range []string{HeaderTraceparent, HeaderTracestate} {
		if v, ok := stringHeader(from, k); ok {
			to[k] = v
		}
	}
}

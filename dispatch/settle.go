package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/broker"
)

// Kind is what becomes of a delivery.
type Kind uint8

const (
	// Requeue gives the delivery back to the broker untouched: no attempt
	// was spent on it (its breaker was open, the relay was stopping), or
	// its outcome could not be published.
	Requeue Kind = iota
	// Reply acks a task the downstream answered, after publishing the
	// answer to its reply_to, when it has one.
	Reply
	// Redeliver acks a task after publishing it to the delay queue of its
	// next redelivery step, from which the broker brings it back.
	Redeliver
	// DeadLetter acks a delivery after publishing it to the queue's .dlq
	// with its reason, and an error reply to its reply_to, when it has one.
	DeadLetter
	// Forwarded acks an outbound message its destination confirmed.
	Forwarded
	// Stale leaves a delivery whose channel died before it was started: the
	// broker has it back already, and may have handed it to another
	// consumer.
	Stale
	// Recount acks a delivery the broker delivered again (its earlier
	// delivery ended without an outcome: the relay crashed, or lost its
	// channel) after publishing it back to its queue with the count of
	// such deliveries (x-relay-deliveries) one higher. The copy is worked
	// on when it comes; the delivery limit dead-letters a task whose count
	// reaches it.
	Recount
)

var kindNames = [...]string{"requeue", "reply", "redeliver", "dead-letter", "forwarded", "stale", "recount"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// Outcome is the decision about one delivery: what settle carries out.
type Outcome struct {
	Kind Kind
	// Reason says why, readably: the x-relay-error of a dead letter or a
	// redelivery, and what a requeue is logged with.
	Reason string
	// Status is the downstream's HTTP status, when one was seen.
	Status int
	// Attempts is the task's downstream attempts over all its deliveries.
	Attempts int
	// Step is the redelivery step a Redeliver goes to (0 is the first).
	Step int
	// Deliveries is a Recount's new count of deliveries without an
	// outcome.
	Deliveries int
	// Returned marks an outbound dead letter its destination returned as
	// unroutable; it is counted as returned, not as dead-lettered.
	Returned bool
	// Body and ContentType are a Reply's answer.
	Body        []byte
	ContentType string
}

// Publisher publishes the messages an outcome needs (a *broker.Publisher).
type Publisher interface {
	// Publish sends msg and returns at once with its pending confirmation.
	Publish(ctx context.Context, exchange, key string, mandatory bool, msg amqp.Publishing) (*broker.Confirmation, error)
}

// Counters count deliveries by how they were settled; a nil field counts
// nothing. Each delivery is counted once.
type Counters struct {
	// Replied counts tasks answered to their reply_to; Completed, tasks
	// answered that had no reply_to.
	Replied, Completed prometheus.Counter
	Redelivered        prometheus.Counter
	DeadLettered       prometheus.Counter
	// Returned counts outbound messages dead-lettered because their
	// destination returned them unroutable.
	Returned prometheus.Counter
	// Forwarded counts outbound messages their destination confirmed.
	Forwarded prometheus.Counter
	Requeued  prometheus.Counter
	// Recounted counts deliveries that came again after an earlier one
	// ended without an outcome.
	Recounted prometheus.Counter
}

func inc(c prometheus.Counter) {
	if c != nil {
		c.Inc()
	}
}

// Intake is the consumer a queue's deliveries come from (a
// *broker.Consumer), as far as settling needs it.
type Intake interface {
	// AwaitCancels returns once no basic.cancel of the consumer is due
	// or waiting for its cancel-ok (or with ctx's error).
	AwaitCancels(ctx context.Context) error
}

// cancelWait bounds how long a delivery published back to its queue waits
// for the queue's consumer to be cancelled (a few milliseconds when the
// broker answers).
const cancelWait = 5 * time.Second

// DelayStep is one delayed redelivery: a queue whose TTL dead-letters
// messages back to the work queue.
type DelayStep struct {
	Delay time.Duration
	Queue string
}

// settler carries outcomes out for one queue.
type settler struct {
	queue string
	dlq   string
	// target is the work queue's target, the value of x-relay-target (a
	// string, held as a header value so that no reply boxes it again);
	// nil for an outbound queue.
	target any
	delays []DelayStep
	pub    Publisher
	counts Counters
	log    *slog.Logger
	// deadLettered is told of every dead letter, after its confirm.
	deadLettered func(queue, reason string)
	// limit is the delivery limit: a delivery that comes again after
	// limit deliveries ended without an outcome is dead-lettered. Zero:
	// none.
	limit int
	// intake is the queue's consumer, set once it exists (see
	// awaitCancels); nil: none to wait for.
	intake atomic.Pointer[intakeOf]
}

// intakeOf boxes an Intake for an atomic.Pointer.
type intakeOf struct{ Intake }

// awaitCancels waits, for at most cancelWait, until no cancel of the
// queue's own consumer is due or under way, before a delivery is
// published back to the queue. A hand-back's copy is published just as
// the breaker that turned it away pauses intake, so without the wait it
// would often reach the queue while the consumer is being cancelled: a
// quorum queue may then send it to that consumer, whose broker channel
// returns it (see broker.Consumer.AwaitCancels), and its next delivery
// comes flagged redelivered, read by the relay as a delivery that ended
// without an outcome, spending the delivery limit that hand-backs must
// not spend.
func (s *settler) awaitCancels(ctx context.Context) {
	in := s.intake.Load()
	if in == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, cancelWait)
	defer cancel()
	if err := in.AwaitCancels(ctx); err != nil {
		s.log.Warn("publishing back to the queue without waiting for its consumer's cancel", "err", err.Error())
	}
}

// redelivered decides what becomes of a delivery the broker flagged as
// redelivered, ok false for any other. Its earlier delivery ended without
// an outcome (the relay crashed or lost its channel while working on it;
// the relay's own hand-backs are published anew and never flagged): the
// count of such deliveries goes up by one, and a task whose count reaches
// the limit is dead-lettered, so that a task that crashes the relay each
// time cannot loop forever.
func (s *settler) redelivered(d *amqp.Delivery) (o Outcome, ok bool) {
	if !d.Redelivered || s.limit <= 0 {
		return Outcome{}, false
	}
	n := min(intHeader(d.Headers, HeaderDeliveries), maxAttempts) + 1
	if n >= s.limit {
		attempts, _ := counts(d.Headers, s.queue, len(s.delays))
		return Outcome{Kind: DeadLetter, Attempts: attempts, Reason: fmt.Sprintf(
			"delivered %d times without an outcome, the delivery limit (amqp.delivery_limit): the relay crashed or lost its broker connection while working on it each time", n)}, true
	}
	return Outcome{Kind: Recount, Deliveries: n}, true
}

// settle carries o out for d: it publishes what o needs, waits for the
// confirms, then acks d; when the publish fails, or o is a requeue, d goes
// back to the broker. ctx bounds the publishing.
func (s *settler) settle(ctx context.Context, d *amqp.Delivery, o Outcome) {
	var err error
	var count prometheus.Counter
	switch o.Kind {
	case Stale:
		// Settle it all the same, so that it is counted out of the
		// deliveries in hand; its channel is gone, so nothing is sent.
		_ = d.Nack(false, true)
		return
	case Requeue:
		s.handBack(ctx, d, o.Reason)
		return
	case Recount:
		count = s.counts.Recounted
		err = s.republish(ctx, d, o.Deliveries)
	case Reply:
		count = s.counts.Completed
		if d.ReplyTo != "" {
			count = s.counts.Replied
			err = s.publishReply(ctx, d, s.replyOf(d, o))
		}
	case Redeliver:
		count = s.counts.Redelivered
		err = s.redeliver(ctx, d, o)
	case DeadLetter:
		count = s.counts.DeadLettered
		if o.Returned {
			count = s.counts.Returned
		}
		err = s.deadLetter(ctx, d, o)
	case Forwarded:
		count = s.counts.Forwarded
	}
	if err != nil {
		s.log.Warn("outcome not confirmed by the broker; the delivery goes back for redelivery",
			"outcome", o.Kind.String(), "err", err.Error(), "message_id", d.MessageId)
		s.requeue(d, "outcome not confirmed")
		return
	}
	if err := d.Ack(false); err != nil {
		// The channel died after the outcome was published: the broker
		// delivers it again (at least once).
		s.log.Warn("ack failed after the outcome was published; the delivery will come again",
			"outcome", o.Kind.String(), "err", err.Error(), "message_id", d.MessageId)
		return
	}
	inc(count)
}

// handBack gives a delivery back to its queue untouched, without spending
// its delivery limit: it is published back to the queue as it came and
// then acked, rather than rejected with requeue, which the broker counts
// as a delivery (x-delivery-count) and flags as redelivered. When that
// publish is not confirmed, it is rejected with requeue after all.
func (s *settler) handBack(ctx context.Context, d *amqp.Delivery, why string) {
	if s.queue == "" || s.pub == nil {
		s.requeue(d, why)
		return
	}
	if err := s.republish(ctx, d, -1); err != nil {
		s.requeue(d, why)
		return
	}
	if err := d.Ack(false); err != nil {
		// The copy is in the queue and the original comes back too: a
		// duplicate, as with any ack lost with its channel.
		s.log.Warn("ack failed after handing a delivery back", "err", err.Error(), "message_id", d.MessageId)
	}
	inc(s.counts.Requeued)
}

// republish publishes d back to its queue with its headers and
// properties, x-relay-deliveries set to deliveries (-1: left as it is),
// and waits for the confirm.
func (s *settler) republish(ctx context.Context, d *amqp.Delivery, deliveries int) error {
	h := make(amqp.Table, len(d.Headers)+1)
	for k, v := range d.Headers {
		switch k {
		case "x-delivery-count", "x-acquired-count":
			// The broker's counts of the delivery being settled: on a
			// new message a publisher's value would be taken as the
			// broker's. (x-death stays: it records the passes through
			// the delay queues.)
		default:
			h[k] = v
		}
	}
	if deliveries >= 0 {
		h[HeaderDeliveries] = int32(deliveries)
	}
	s.awaitCancels(ctx)
	if err := s.publishAndWait(ctx, "", s.queue, broker.PublishingOf(d, h)); err != nil {
		return fmt.Errorf("publishing back to %s: %w", s.queue, err)
	}
	return nil
}

func (s *settler) requeue(d *amqp.Delivery, why string) {
	inc(s.counts.Requeued)
	if err := d.Nack(false, true); err != nil && !errors.Is(err, broker.ErrStale) {
		s.log.Warn("requeue failed", "err", err.Error(), "why", why)
	}
}

// replyOf is a task's answer as it goes to its reply_to.
func (s *settler) replyOf(d *amqp.Delivery, o Outcome) amqp.Publishing {
	h := amqp.Table{
		HeaderStatus:   int32(o.Status),
		HeaderTarget:   s.target,
		HeaderAttempts: int32(o.Attempts),
	}
	copyTrace(d.Headers, h)
	return amqp.Publishing{
		ContentType:   o.ContentType,
		CorrelationId: d.CorrelationId,
		Headers:       h,
		Body:          o.Body,
		DeliveryMode:  d.DeliveryMode,
		Timestamp:     time.Now(),
	}
}

// publishReply publishes a reply (mandatory, so a vanished reply queue is
// noticed) and waits for its confirm. A reply queue that no longer exists
// is logged, not retried: its client is gone.
func (s *settler) publishReply(ctx context.Context, d *amqp.Delivery, msg amqp.Publishing) error {
	err := s.publishAndWait(ctx, "", d.ReplyTo, msg)
	if errors.Is(err, broker.ErrReturned) {
		s.log.Warn("reply queue no longer exists; reply dropped", "reply_to", d.ReplyTo)
		return nil
	}
	return err
}

func (s *settler) publishAndWait(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	conf, err := s.pub.Publish(ctx, exchange, key, true, msg)
	if err != nil {
		return err
	}
	return conf.Wait(ctx)
}

// deadLetter sends d to the queue's .dlq with o's reason, and an error
// reply to its reply_to when it has one; it returns once both are
// confirmed.
func (s *settler) deadLetter(ctx context.Context, d *amqp.Delivery, o Outcome) error {
	h := copyHeaders(d.Headers, 5)
	if s.target == nil {
		// Outbound: the message keeps the headers it came with, so that
		// it can be replayed as it was.
		h = make(amqp.Table, len(d.Headers)+2)
		for k, v := range d.Headers {
			h[k] = v
		}
	} else {
		h[HeaderAttempts] = int32(o.Attempts)
		h[HeaderTarget] = s.target
		if o.Status != 0 {
			h[HeaderStatus] = int32(o.Status)
		}
	}
	h[HeaderError] = o.Reason
	h[HeaderQueue] = s.queue
	conf, err := s.pub.Publish(ctx, "", s.dlq, true, broker.PublishingOf(d, h))
	if err != nil {
		return fmt.Errorf("dead-lettering to %s: %w", s.dlq, err)
	}
	var replyErr error
	if d.ReplyTo != "" && s.target != nil {
		rh := amqp.Table{HeaderError: o.Reason, HeaderAttempts: int32(o.Attempts), HeaderTarget: s.target}
		if o.Status != 0 {
			rh[HeaderStatus] = int32(o.Status)
		}
		copyTrace(d.Headers, rh)
		replyErr = s.publishReply(ctx, d, amqp.Publishing{
			ContentType:   "text/plain; charset=utf-8",
			CorrelationId: d.CorrelationId,
			Headers:       rh,
			Body:          []byte(o.Reason),
			DeliveryMode:  d.DeliveryMode,
			Timestamp:     time.Now(),
		})
	}
	if err := conf.Wait(ctx); err != nil {
		return fmt.Errorf("dead-lettering to %s: %w", s.dlq, err)
	}
	if replyErr != nil {
		return replyErr
	}
	s.log.Warn("dead-lettered", "reason", o.Reason, "attempts", o.Attempts, "message_id", d.MessageId)
	if s.deadLettered != nil {
		s.deadLettered(s.queue, o.Reason)
	}
	return nil
}

// redeliver sends d to the delay queue of o's step, to come back to the
// work queue when its TTL passes.
func (s *settler) redeliver(ctx context.Context, d *amqp.Delivery, o Outcome) error {
	step := s.delays[o.Step]
	h := copyHeaders(d.Headers, 4)
	h[HeaderAttempts] = int32(o.Attempts)
	h[HeaderRedeliveries] = int32(o.Step + 1)
	h[HeaderError] = o.Reason
	if o.Status != 0 {
		h[HeaderStatus] = int32(o.Status)
	}
	msg := broker.PublishingOf(d, h)
	msg.DeliveryMode = amqp.Persistent
	if err := s.publishAndWait(ctx, "", step.Queue, msg); err != nil {
		return fmt.Errorf("scheduling redelivery through %s: %w", step.Queue, err)
	}
	s.log.Info("task scheduled for redelivery", "after", step.Delay, "attempts", o.Attempts, "reason", o.Reason, "message_id", d.MessageId)
	return nil
}

// copyTrace copies the trace context headers from a task to its reply,
// as text. A text value is copied as it is, without boxing it again.
func copyTrace(from, to amqp.Table) {
	for _, k := range [...]string{HeaderTraceparent, HeaderTracestate} {
		switch v := from[k].(type) {
		case string:
			to[k] = from[k]
		case []byte:
			to[k] = string(v)
		}
	}
}

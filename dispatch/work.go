package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/backoff"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/broker"
	"github.com/vsm-relay/relay/metrics"
)

// probeWait is how long a task waits before trying again when the
// breaker's half-open probe slots are all taken.
const probeWait = 50 * time.Millisecond

// WorkSpec describes a work queue for NewWork.
type WorkSpec struct {
	Queue  string
	Target *Target
	// Redelivery holds the delays of the redeliveries that follow spent
	// in-process retries; empty: dead-letter at once.
	Redelivery []time.Duration
	// Prefetch bounds the deliveries in hand, and so the ones waiting for
	// a worker.
	Prefetch int
	// Concurrency is how many of the queue's tasks run at once. Zero: 1.
	Concurrency int
	// Publisher publishes replies, redeliveries and dead letters.
	Publisher Publisher
	Metrics   *metrics.QueueMetrics
	Logger    *slog.Logger
	// DeadLettered is told of every dead letter once it is confirmed.
	DeadLettered func(queue, reason string)
	// DeliveryLimit dead-letters a task that comes again after this many
	// deliveries ended without an outcome. Zero: no limit.
	DeliveryLimit int
	// Sleep waits between in-process retries, ending early with ctx's
	// error. Nil: backoff.Sleep.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Work consumes one work queue: it decides each task's outcome and settles
// it. Make one with NewWork; hand it deliveries with Deliver between Start
// and Stop.
type Work struct {
	queue  string
	target atomic.Pointer[Target]
	steps  int
	settle settler
	m      *metrics.QueueMetrics
	log    *slog.Logger
	sleep  func(ctx context.Context, d time.Duration) error

	prefetch    int
	concurrency int
	workers     *pool
	stop        context.Context
}

// NewWork returns the work queue s describes.
func NewWork(s WorkSpec) *Work {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("queue", s.Queue, "target", s.Target.name)
	m := s.Metrics
	if m == nil {
		var detached *metrics.Metrics
		m = detached.Queue(s.Queue, s.Target.name)
	}
	w := &Work{
		queue: s.Queue,
		steps: len(s.Redelivery),
		settle: settler{
			queue: s.Queue, dlq: DeadLetterQueueName(s.Queue), target: s.Target.name,
			pub: s.Publisher, log: log, deadLettered: s.DeadLettered, limit: s.DeliveryLimit,
			counts: Counters{
				Replied: m.Replied, Completed: m.Completed, Redelivered: m.Redelivered,
				DeadLettered: m.DeadLettered, Requeued: m.Requeued, Recounted: m.Recounted,
			},
		},
		m:           m,
		log:         log,
		sleep:       s.Sleep,
		prefetch:    max(1, s.Prefetch),
		concurrency: max(1, s.Concurrency),
	}
	if w.sleep == nil {
		w.sleep = backoff.Sleep
	}
	w.target.Store(s.Target)
	for _, d := range s.Redelivery {
		w.settle.delays = append(w.settle.delays, DelayStep{Delay: d, Queue: DelayQueueName(s.Queue, d)})
	}
	return w
}

// Queue returns the work queue's name.
func (w *Work) Queue() string { return w.queue }

// SetTarget makes t the queue's target from the next task on (a reload's
// new settings of the same target). Tasks under way finish with the old.
func (w *Work) SetTarget(t *Target) { w.target.Store(t) }

// SetIntake tells the queue its consumer: what it publishes back to the
// queue waits for that consumer's cancels (see Intake). Call it before
// the consumer takes deliveries.
func (w *Work) SetIntake(in Intake) { w.settle.intake.Store(&intakeOf{in}) }

// Target returns the queue's target.
func (w *Work) Target() *Target { return w.target.Load() }

// Topology is what the work queue needs declared: itself, its .dlq and
// its delay queues, all of queueType (classic or quorum; "" is classic).
func (w *Work) Topology(queueType string) broker.Topology {
	args := QueueArgs(queueType)
	t := broker.Topology{Queues: []broker.Queue{
		{Name: w.queue, Args: args},
		{Name: w.settle.dlq, Args: args},
	}}
	for _, s := range w.settle.delays {
		da := amqp.Table{
			"x-message-ttl":             int64(s.Delay / time.Millisecond),
			"x-dead-letter-exchange":    "",
			"x-dead-letter-routing-key": w.queue,
		}
		for k, v := range args {
			da[k] = v
		}
		if queueType == QueueQuorum {
			// A quorum queue can dead-letter at least once, which a
			// delayed task needs on its way back to the work queue.
			da["x-dead-letter-strategy"] = "at-least-once"
			da["x-overflow"] = "reject-publish"
		}
		t.Queues = append(t.Queues, broker.Queue{Name: s.Queue, Args: da,
			Strict: []string{"x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key"}})
	}
	return t
}

// Queue types.
const (
	QueueClassic = "classic"
	QueueQuorum  = "quorum"
)

// QueueArgs are the arguments of a queue of queueType ("" is classic).
func QueueArgs(queueType string) amqp.Table {
	if queueType == "" {
		queueType = QueueClassic
	}
	return amqp.Table{"x-queue-type": queueType}
}

// Start runs the queue's workers. stop ends when the relay stops taking
// work: no new attempt starts and backoff waits end. work bounds every
// call and publish, and ends when in-flight work must be given up.
func (w *Work) Start(stop, work context.Context) {
	w.stop = stop
	w.workers = newPool(work, w.concurrency, w.prefetch, w.handle)
}

// Deliver hands a task to a worker. It is the consumer's handler: it
// never blocks.
func (w *Work) Deliver(d amqp.Delivery) {
	w.m.InFlight.Inc()
	w.workers.submit(d)
}

// Wait returns when every task handed over has been settled.
func (w *Work) Wait() { w.workers.wait() }

// Stop ends the workers; tasks not yet started stay unsettled, and go back
// to the broker with their channel.
func (w *Work) Stop() {
	if w.workers != nil {
		w.workers.stop()
	}
}

func (w *Work) handle(ctx context.Context, d amqp.Delivery) {
	start := time.Now()
	w.settle.settle(ctx, &d, w.decide(ctx, &d))
	w.m.Duration.Observe(time.Since(start).Seconds())
	w.m.InFlight.Dec()
}

// decide runs one task to its outcome: the table of the package comment.
// ctx bounds the calls; w.stop ends retries.
func (w *Work) decide(ctx context.Context, d *amqp.Delivery) Outcome {
	if !broker.Live(d.Acknowledger) {
		return Outcome{Kind: Stale}
	}
	if o, ok := w.settle.redelivered(d); ok {
		return o
	}
	if w.stop.Err() != nil {
		return Outcome{Kind: Requeue, Reason: "shutting down"}
	}
	t := w.target.Load()
	attempts, step := counts(d.Headers, w.queue, w.steps)
	if int64(len(d.Body)) > t.maxReq {
		return Outcome{Kind: DeadLetter, Attempts: attempts,
			Reason: fmt.Sprintf("task body of %d bytes is over target %s's limit of %d bytes", len(d.Body), t.name, t.maxReq)}
	}
	tk := task{body: d.Body, contentType: d.ContentType, correlationID: d.CorrelationId, messageID: d.MessageId}
	tk.traceparent, _ = stringHeader(d.Headers, HeaderTraceparent)
	tk.tracestate, _ = stringHeader(d.Headers, HeaderTracestate)

	bo := t.policy.Start()
	tried := false // a request of this delivery reached the downstream
	var last result
	for {
		if tried {
			// A retry is for a downstream that is up. One whose breaker
			// is open or probing is not, and a task that has just failed
			// is a poor probe: it may be the very task that fails. It
			// takes its next step now, its attempts counted, and leaves
			// the probes to tasks that have not failed; kept in hand, it
			// would also hold a place of the few the probes are given.
			if s := t.Breaker.State(); s != breaker.Closed {
				return w.next(step, attempts, last, "; breaker "+t.Breaker.Name()+" is "+s.String())
			}
		}
		res, err := t.attempt(ctx, &tk)
		switch {
		case err == nil:
		case errors.Is(err, errProbeBusy) && !tried:
			if w.sleep(w.stop, probeWait) != nil {
				return Outcome{Kind: Requeue, Reason: "shutting down"}
			}
			continue
		case errors.Is(err, errBreakerOpen) || errors.Is(err, errProbeBusy):
			if !tried {
				// Never reached the downstream: back untouched, and
				// intake pauses until the breaker half-opens.
				return Outcome{Kind: Requeue, Reason: "breaker " + t.Breaker.Name() + " is open"}
			}
			// Its own failures may have opened the breaker: the attempt
			// is spent, and the task moves on rather than going back to
			// the head of the queue.
			return w.next(step, attempts, last, "; breaker "+t.Breaker.Name()+" is open")
		default:
			// The relay is giving up in-flight work.
			if !tried {
				return Outcome{Kind: Requeue, Reason: "shutting down"}
			}
			return w.next(step, attempts, last, "")
		}
		if !res.local {
			if !tried {
				t.firstAttempt()
			}
			attempts++
			tried = true
		}
		last = res
		switch res.kind {
		case kindSuccess:
			return Outcome{Kind: Reply, Status: res.status, Attempts: attempts, Body: res.body, ContentType: res.contentType}
		case kindPermanent:
			return Outcome{Kind: DeadLetter, Status: res.status, Attempts: attempts, Reason: res.reason}
		}
		delay, ok := bo.NextAfter(res.retryAfter)
		if !ok {
			if !tried && step >= w.steps {
				// Only our own pool turned it away, on its last step: a
				// busy relay is no fault of the task's, and a task that
				// never reached its downstream is never dead-lettered
				// for it. Back to the tail of its queue, untouched.
				return Outcome{Kind: Requeue, Reason: res.reason + "; it never reached its downstream"}
			}
			return w.next(step, attempts, res, "")
		}
		// The budget bounds the retries that reach the downstream; our own
		// pool turning a call away costs the downstream nothing.
		if !res.local && !t.mayRetry() {
			return w.next(step, attempts, res, "; retry budget of target "+t.name+" spent")
		}
		w.m.Retries.Inc()
		if w.sleep(w.stop, delay) != nil {
			if !tried {
				return Outcome{Kind: Requeue, Reason: "shutting down"}
			}
			return w.next(step, attempts, res, "")
		}
	}
}

// next is the outcome of a task whose failure res ended this delivery's
// attempts: its next redelivery step, or the dead-letter queue after the
// last one.
func (w *Work) next(step, attempts int, res result, why string) Outcome {
	o := Outcome{Kind: DeadLetter, Status: res.status, Attempts: attempts, Reason: res.reason + why}
	if step < w.steps {
		o.Kind, o.Step = Redeliver, step
	}
	return o
}

// DeadLetterQueueName is the queue a queue's dead letters go to.
func DeadLetterQueueName(queue string) string { return queue + ".dlq" }

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

// Package dispatch decides what becomes of each delivery the relay takes,
// and then settles it.
//
// A delivery from a work queue is a task: dispatch calls the queue's
// target (an HTTP service) inside its bulkhead and breaker, retries a
// transient failure in-process under the target's backoff policy, and ends
// with one Outcome, a value: reply, redeliver through the delay queue of a
// step, dead-letter with a reason, or requeue untouched. A delivery from
// an outbound-publish queue is a message for another exchange: dispatch
// checks its destination against the allowlist and publishes it through
// the destination's bulkhead and breaker, and its outcome is one of the
// same values (forwarded, dead-lettered, requeued).
//
// One settle path carries any outcome out, for both kinds of queue:
// publish what the outcome needs (the reply, the dead letter and its error
// reply, the redelivery), wait for the broker's confirm, and only then ack
// the delivery; when the publish is not confirmed, or the outcome is a
// requeue, the delivery goes back to the broker. Nothing is acked before
// its outcome is safe.
//
// The rules that decide are these. A failed attempt is an attempt: once a
// delivery has reached its downstream, it never goes back to the head of
// the queue untouched; when its in-process retries are spent, or its
// breaker is not closed when a retry is due (its own failures may have
// opened it), or the relay stops, it takes its next redelivery step (or
// the dead-letter queue after the last) with its attempts counted. A
// retry is made only while the breaker is closed, so the half-open probes
// go to tasks that have not failed. Only a delivery that never reached
// the downstream (its breaker was open, the relay was stopping, our own
// pool turned it away on its last step) is requeued untouched, and intake
// pauses while the breaker is open, so the tasks wait in the broker. This
// keeps one task the downstream always fails from holding its queue
// hostage: the half-open probes pick other tasks, and the bad one reaches
// the dead-letter queue after its steps.
//
// Dispatch sees the broker through two small interfaces: a Publisher (a
// *broker.Publisher) and each delivery's amqp.Acknowledger. It knows
// nothing of the relay's configuration or connections; the relay package
// wires it.
package dispatch

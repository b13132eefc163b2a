package dispatch

import (
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/internal/amqpheader"
)

// Header names of the relay's message contract.
const (
	HeaderError        = "x-relay-error"        // why a task or message was dead-lettered or failed
	HeaderStatus       = "x-relay-status"       // the downstream's HTTP status, when one was seen
	HeaderTarget       = "x-relay-target"       // the target that answered
	HeaderAttempts     = "x-relay-attempts"     // downstream attempts made so far, over all deliveries
	HeaderRedeliveries = "x-relay-redeliveries" // delayed redeliveries made so far
	HeaderQueue        = "x-relay-queue"        // the queue a dead letter came from
	HeaderDeliveries   = "x-relay-deliveries"   // deliveries so far that ended without an outcome
	HeaderExchange     = "x-relay-exchange"     // outbound: the destination exchange
	HeaderRoutingKey   = "x-relay-routing-key"  // outbound: the destination routing key

	headerPrefix = "x-relay-"
)

// Trace context headers (W3C) carried from a task to the downstream and
// back on the reply.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// intHeader reads a non-negative integer header in whatever integer type
// (or decimal string) a client's library sent it. Anything else counts as
// absent: a bad header never fails a task.
func intHeader(t amqp.Table, key string) int {
	n, ok := amqpheader.Int(t[key])
	if !ok || n < 0 {
		return 0
	}
	return n
}

// stringHeader reads a text header; ok is false when it is missing or not
// text.
func stringHeader(t amqp.Table, key string) (string, bool) {
	switch v := t[key].(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	}
	return "", false
}

// copyHeaders returns a copy of t without the relay's own x-relay-*
// headers, with room for extra more.
func copyHeaders(t amqp.Table, extra int) amqp.Table {
	out := make(amqp.Table, len(t)+extra)
	for k, v := range t {
		if strings.HasPrefix(strings.ToLower(k), headerPrefix) {
			continue
		}
		out[k] = v
	}
	return out
}

// maxAttempts bounds x-relay-attempts as read from a task: a count past it
// did not come from the relay.
const maxAttempts = 1 << 20

// counts are a task's attempts and redeliveries so far, as far as they can
// be trusted. Both headers arrive on a message anybody may publish, so
// neither is taken as it stands: redeliveries are bounded by the passes
// through this queue's delay queues that the broker itself recorded in
// x-death (a publisher cannot skip the steps by claiming them), and by the
// steps configured; attempts are bounded to a plausible count. A bad or
// negative value counts as none.
func counts(h amqp.Table, queue string, steps int) (attempts, redeliveries int) {
	attempts = min(intHeader(h, HeaderAttempts), maxAttempts)
	redeliveries = min(intHeader(h, HeaderRedeliveries), delayPasses(h, queue), steps)
	return attempts, redeliveries
}

// delayPasses counts how often the broker dead-lettered the message back
// from one of queue's delay queues (queue.delay.*), by its x-death header.
func delayPasses(h amqp.Table, queue string) int {
	deaths, ok := h["x-death"].([]any)
	if !ok {
		return 0
	}
	prefix := queue + ".delay."
	n := 0
	for _, d := range deaths {
		t, ok := d.(amqp.Table)
		if !ok {
			continue
		}
		if q, _ := stringHeader(t, "queue"); !strings.HasPrefix(q, prefix) {
			continue
		}
		if r, _ := stringHeader(t, "reason"); r != "expired" {
			continue
		}
		n += intHeader(t, "count")
	}
	return n
}

package relay

import (
	"math"
	"strconv"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Header names of the relay's message contract.
const (
	HeaderError        = "x-relay-error"        // why a task or message was dead-lettered or failed
	HeaderStatus       = "x-relay-status"       // the downstream's HTTP status, when one was seen
	HeaderTarget       = "x-relay-target"       // the target that answered
	HeaderAttempts     = "x-relay-attempts"     // downstream attempts made so far, over all deliveries
	HeaderRedeliveries = "x-relay-redeliveries" // delayed redeliveries made so far
	HeaderQueue        = "x-relay-queue"        // the queue a dead letter came from
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
	v, ok := t[key]
	if !ok {
		return 0
	}
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int8:
		n = int64(x)
	case int16:
		n = int64(x)
	case int32:
		n = int64(x)
	case int64:
		n = x
	case uint8:
		n = int64(x)
	case uint16:
		n = int64(x)
	case uint32:
		n = int64(x)
	case uint64:
		if x > math.MaxInt32 {
			return 0
		}
		n = int64(x)
	case float32:
		n = int64(x)
	case float64:
		n = int64(x)
	case string:
		p, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		if err != nil {
			return 0
		}
		n = p
	default:
		return 0
	}
	if n < 0 || n > math.MaxInt32 {
		return 0
	}
	return int(n)
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

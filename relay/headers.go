package relay

import (
	"time"

	"github.com/vsm-relay/relay/dispatch"
)

// Header names of the relay's message contract (see package dispatch).
const (
	HeaderError        = dispatch.HeaderError
	HeaderStatus       = dispatch.HeaderStatus
	HeaderTarget       = dispatch.HeaderTarget
	HeaderAttempts     = dispatch.HeaderAttempts
	HeaderRedeliveries = dispatch.HeaderRedeliveries
	HeaderQueue        = dispatch.HeaderQueue
	HeaderDeliveries   = dispatch.HeaderDeliveries
	HeaderExchange     = dispatch.HeaderExchange
	HeaderRoutingKey   = dispatch.HeaderRoutingKey
	HeaderTraceparent  = dispatch.HeaderTraceparent
	HeaderTracestate   = dispatch.HeaderTracestate
)

// DelayQueueName is the queue that holds a work queue's tasks for a
// redelivery step of delay d (see dispatch.DelayQueueName).
func DelayQueueName(queue string, d time.Duration) string {
	return dispatch.DelayQueueName(queue, d)
}

package metrics

import "github.com/prometheus/client_golang/prometheus"

// Outcomes of an outbound message, the outcome label of
// relay_outbound_messages_total.
const (
	OutboundPublished    = "published"
	OutboundReturned     = "returned"
	OutboundNacked       = "nacked"
	OutboundDeadLettered = "dead_lettered"
)

// OutboundMetrics are one outbound-publish queue's metrics, resolved once
// by Metrics.Outbound. Every field is set; updating them does not allocate.
type OutboundMetrics struct {
	// Published, Returned, Nacked and DeadLettered count messages by
	// outcome (relay_outbound_messages_total{queue,outcome}): confirmed by
	// the destination, returned as unroutable, nacked by the destination,
	// or sent to <queue>.dlq.
	Published, Returned, Nacked, DeadLettered prometheus.Counter
	// ConfirmLatency observes seconds from publish to the destination's
	// confirm (relay_outbound_confirm_seconds{queue}).
	ConfirmLatency prometheus.Observer
}

// Outbound resolves the metrics of the outbound-publish queue named queue.
func (m *Metrics) Outbound(queue string) *OutboundMetrics {
	m = m.orDetached()
	queue = labelValue(queue)
	return &OutboundMetrics{
		Published:      m.outbound.WithLabelValues(queue, OutboundPublished),
		Returned:       m.outbound.WithLabelValues(queue, OutboundReturned),
		Nacked:         m.outbound.WithLabelValues(queue, OutboundNacked),
		DeadLettered:   m.outbound.WithLabelValues(queue, OutboundDeadLettered),
		ConfirmLatency: m.confirmTime.WithLabelValues(queue),
	}
}

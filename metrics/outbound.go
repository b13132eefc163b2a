package metrics

import "github.com/prometheus/client_golang/prometheus"

// Outcomes of an outbound message, the outcome label of
// relay_outbound_messages_total.
const (
	OutboundPublished    = "published"
	OutboundReturned     = "returned"
	OutboundNacked       = "nacked"
	OutboundDeadLettered = "dead_lettered"
	OutboundRequeued     = "requeued"
)

// OutboundMetrics are one outbound-publish queue's metrics, resolved once
// by Metrics.Outbound. Every field is set; updating them does not allocate.
type OutboundMetrics struct {
	// Published, Returned, DeadLettered and Requeued count messages by
	// how they left the relay (relay_outbound_messages_total{queue,outcome}):
	// confirmed by the destination, returned as unroutable (and so sent to
	// <queue>.dlq, counted here only), sent to <queue>.dlq for another
	// reason, or given back to the broker. Nacked counts publishes the
	// destination nacked; the message is published again.
	Published, Returned, Nacked, DeadLettered, Requeued prometheus.Counter
	// Recounted counts messages the broker delivered again after an
	// earlier delivery ended without an outcome
	// (relay_redeliveries_total{queue}).
	Recounted prometheus.Counter
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
		Requeued:       m.outbound.WithLabelValues(queue, OutboundRequeued),
		Recounted:      m.recounted.WithLabelValues(queue),
		ConfirmLatency: m.confirmTime.WithLabelValues(queue),
	}
}

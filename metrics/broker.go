package metrics

import "github.com/prometheus/client_golang/prometheus"

// Outcomes of a publisher confirm, the outcome label of
// relay_amqp_publishes_total.
const (
	ConfirmAck      = "ack"
	ConfirmNack     = "nack"
	ConfirmReturned = "returned"
	ConfirmLost     = "lost"
)

// BrokerMetrics are one broker connection's metrics, resolved once by
// Metrics.Broker. Every field is set; updating them does not allocate.
type BrokerMetrics struct {
	// Reconnects counts connections re-established after a loss
	// (relay_amqp_reconnects_total{connection}).
	Reconnects prometheus.Counter
	// Connected is 1 while the connection is open, else 0
	// (relay_amqp_connected{connection}).
	Connected prometheus.Gauge
	// Blocked is 1 while the broker blocks the connection's publishing,
	// else 0 (relay_amqp_blocked{connection}).
	Blocked prometheus.Gauge
	// BlockedSeconds accumulates the time spent blocked
	// (relay_amqp_blocked_seconds_total{connection}).
	BlockedSeconds prometheus.Counter
	// PublishConfirms returns the counter of a confirm outcome
	// (relay_amqp_publishes_total{connection,outcome}): ConfirmAck,
	// ConfirmNack, ConfirmReturned or ConfirmLost. Another outcome is
	// counted under its own label value rather than dropped, at the price
	// of a lookup per call.
	PublishConfirms func(outcome string) prometheus.Counter
}

// Broker resolves the metrics of the broker connection named connection:
// "consume", "publish", or an outbound destination's name.
func (m *Metrics) Broker(connection string) *BrokerMetrics {
	m = m.orDetached()
	connection = labelValue(connection)
	c := &confirmCounters{
		vec:        m.publishes,
		connection: connection,
		ack:        m.publishes.WithLabelValues(connection, ConfirmAck),
		nack:       m.publishes.WithLabelValues(connection, ConfirmNack),
		returned:   m.publishes.WithLabelValues(connection, ConfirmReturned),
		lost:       m.publishes.WithLabelValues(connection, ConfirmLost),
	}
	return &BrokerMetrics{
		Reconnects:      m.reconnects.WithLabelValues(connection),
		Connected:       m.connected.WithLabelValues(connection),
		Blocked:         m.blocked.WithLabelValues(connection),
		BlockedSeconds:  m.blockedSeconds.WithLabelValues(connection),
		PublishConfirms: c.forOutcome,
	}
}

// confirmCounters are one connection's confirm counters, one per outcome.
type confirmCounters struct {
	vec                       *prometheus.CounterVec
	connection                string
	ack, nack, returned, lost prometheus.Counter
}

func (c *confirmCounters) forOutcome(outcome string) prometheus.Counter {
	switch outcome {
	case ConfirmAck:
		return c.ack
	case ConfirmNack:
		return c.nack
	case ConfirmReturned:
		return c.returned
	case ConfirmLost:
		return c.lost
	default:
		return c.vec.WithLabelValues(c.connection, labelValue(outcome))
	}
}

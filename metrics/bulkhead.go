package metrics

import "github.com/prometheus/client_golang/prometheus"

// BulkheadWait resolves the wait-time histogram of the bulkhead named
// bulkhead (relay_bulkhead_wait_seconds{bulkhead}): observe the seconds a
// caller waited for a slot, whether it got one or was rejected.
func (m *Metrics) BulkheadWait(bulkhead string) prometheus.Observer {
	m = m.orDetached()
	return m.bulkheadWait.WithLabelValues(labelValue(bulkhead))
}

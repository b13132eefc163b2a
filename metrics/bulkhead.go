package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vsm-relay/relay/bulkhead"
)

// BulkheadWait resolves the wait-time histogram of the bulkhead named
// bulkhead (relay_bulkhead_wait_seconds{bulkhead}): observe the seconds a
// caller waited for a slot, whether it got one or was rejected.
func (m *Metrics) BulkheadWait(bulkhead string) prometheus.Observer {
	m = m.orDetached()
	return m.bulkheadWait.WithLabelValues(labelValue(bulkhead))
}

// Reasons of a bulkhead rejection, the reason label of
// relay_bulkhead_rejected_total; they match bulkhead.Reason.
const (
	RejectedFull        = "full"
	RejectedTimeout     = "timeout"
	RejectedRateLimited = "rate_limited"
)

// bulkheadCollector exposes bulkheads' stats at scrape time.
type bulkheadCollector struct {
	stats       func() []bulkhead.Stats
	busy        *prometheus.Desc
	available   *prometheus.Desc
	waiting     *prometheus.Desc
	capacity    *prometheus.Desc
	overflowing *prometheus.Desc
	heldTooLong *prometheus.Desc
	checkouts   *prometheus.Desc
	rejected    *prometheus.Desc
}

// NewBulkheadCollector returns a collector that calls stats at every scrape
// and exposes, per bulkhead:
//
//	relay_bulkhead_busy{bulkhead}                  slots checked out
//	relay_bulkhead_available{bulkhead}             slots free
//	relay_bulkhead_waiting{bulkhead}               callers queued for a slot
//	relay_bulkhead_capacity{bulkhead}              size plus overflow
//	relay_bulkhead_overflowing{bulkhead}           overflow slots in use
//	relay_bulkhead_held_too_long{bulkhead}         slots held past the hold warning
//	relay_bulkhead_checkouts_total{bulkhead}       successful checkouts
//	relay_bulkhead_rejected_total{bulkhead,reason} rejections: full, timeout, rate_limited
//
// The two counters are the counts bulkhead.Stats keeps from the bulkhead's
// making, so they start at zero with the process, as Prometheus expects of
// a counter. stats must be safe to call from the scraping goroutine; a nil
// stats exposes no bulkheads. Register the collector on the same registerer
// as New.
func NewBulkheadCollector(stats func() []bulkhead.Stats) prometheus.Collector {
	perBulkhead := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "bulkhead", name), help, []string{"bulkhead"}, nil)
	}
	return &bulkheadCollector{
		stats:       stats,
		busy:        perBulkhead("busy", "Bulkhead slots checked out."),
		available:   perBulkhead("available", "Bulkhead slots free to check out."),
		waiting:     perBulkhead("waiting", "Callers queued for a bulkhead slot."),
		capacity:    perBulkhead("capacity", "Bulkhead slots in all: size plus overflow."),
		overflowing: perBulkhead("overflowing", "Bulkhead overflow slots in use."),
		heldTooLong: perBulkhead("held_too_long", "Bulkhead slots held longer than the hold warning: likely leaks."),
		checkouts:   perBulkhead("checkouts_total", "Successful bulkhead checkouts."),
		rejected: prometheus.NewDesc(
			prometheus.BuildFQName(namespace, "bulkhead", "rejected_total"),
			"Bulkhead checkouts turned away, by reason: full, timeout or rate_limited.",
			[]string{"bulkhead", "reason"}, nil),
	}
}

func (c *bulkheadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.busy
	ch <- c.available
	ch <- c.waiting
	ch <- c.capacity
	ch <- c.overflowing
	ch <- c.heldTooLong
	ch <- c.checkouts
	ch <- c.rejected
}

func (c *bulkheadCollector) Collect(ch chan<- prometheus.Metric) {
	if c.stats == nil {
		return
	}
	const (
		gauge   = prometheus.GaugeValue
		counter = prometheus.CounterValue
	)
	for _, s := range c.stats() {
		ch <- constMetric(c.busy, gauge, float64(s.Busy), s.Name)
		ch <- constMetric(c.available, gauge, float64(s.Available), s.Name)
		ch <- constMetric(c.waiting, gauge, float64(s.Waiting), s.Name)
		ch <- constMetric(c.capacity, gauge, float64(s.Capacity), s.Name)
		ch <- constMetric(c.overflowing, gauge, float64(s.Overflowing), s.Name)
		ch <- constMetric(c.heldTooLong, gauge, float64(s.HeldTooLong), s.Name)
		ch <- constMetric(c.checkouts, counter, float64(s.Checkouts), s.Name)
		ch <- constMetric(c.rejected, counter, float64(s.RejectedFull), s.Name, RejectedFull)
		ch <- constMetric(c.rejected, counter, float64(s.RejectedTimeout), s.Name, RejectedTimeout)
		ch <- constMetric(c.rejected, counter, float64(s.RejectedRateLimited), s.Name, RejectedRateLimited)
	}
}

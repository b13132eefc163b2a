package algedonic

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vsm-relay/relay/internal/promreg"
)

type sigSource struct {
	signal Signal
	source string
}

// metrics are the emitter's own; the signal counters of the contract's
// sources are resolved once, so counting an event allocates nothing.
type metrics struct {
	signals   *prometheus.CounterVec
	resolved  map[sigSource]prometheus.Counter
	dropped   prometheus.Counter
	published prometheus.Counter
	failures  prometheus.Counter
	coalesced prometheus.Counter
	pending   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		signals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "relay", Subsystem: "algedonic", Name: "signals_total",
			Help: "Algedonic events raised, by signal and source; a coalesced occurrence counts too.",
		}, []string{"signal", "source"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "relay", Subsystem: "algedonic", Name: "dropped_total",
			Help: "Algedonic events dropped unpublished because the buffer was full (or the event could not be encoded).",
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "relay", Subsystem: "algedonic", Name: "published_total",
			Help: "Algedonic events published and confirmed by the broker.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "relay", Subsystem: "algedonic", Name: "publish_failures_total",
			Help: "Failed attempts to publish an algedonic event (each is retried).",
		}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "relay", Subsystem: "algedonic", Name: "coalesced_total",
			Help: "Occurrences counted into a coalescing window instead of being sent at once.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "relay", Subsystem: "algedonic", Name: "pending",
			Help: "Algedonic events waiting to be published.",
		}),
		resolved: map[sigSource]prometheus.Counter{},
	}
	for _, s := range []Signal{Pain, Pleasure} {
		for _, src := range []string{SourceBreaker, SourceBulkhead, SourceQueue, SourceHealth, SourceAMQP} {
			m.resolved[sigSource{s, src}] = m.signals.WithLabelValues(string(s), src)
		}
	}
	if reg == nil {
		return m, nil
	}
	if _, err := promreg.RegisterAll(reg, m.signals, m.dropped, m.published, m.failures, m.coalesced, m.pending); err != nil {
		return nil, fmt.Errorf("algedonic: registering metrics: %w", err)
	}
	return m, nil
}

func (m *metrics) signal(s Signal, source string) prometheus.Counter {
	if c, ok := m.resolved[sigSource{s, source}]; ok {
		return c
	}
	return m.signals.WithLabelValues(string(s), source)
}

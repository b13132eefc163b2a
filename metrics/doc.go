// Package metrics holds the relay's Prometheus metrics: their names, label
// sets and buckets, in one place, so that every component counts the same
// way and a dashboard can rely on the names.
//
// # Push metrics
//
// New registers the relay's counters, gauges and histograms on the
// registerer it is handed and returns them as a *Metrics. Components do not
// see the vectors: at setup they ask for the children of their own label
// values (Queue, Target, Outbound, Broker, BulkheadWait) and get small
// structs of resolved counters and observers. Resolving once matters because
// WithLabelValues hashes its arguments and looks them up under a lock; done
// per task, it would cost more than the counting itself. The per-task
// updates of a successful task therefore allocate nothing.
//
// # Pull collectors
//
// Circuit breakers and bulkheads already hold their state; copying it into
// gauges on every change would only add a second source of truth that can
// drift. NewBreakerCollector and NewBulkheadCollector read snapshots at
// scrape time instead and turn them into const metrics, the way
// client_golang's own collectors do. They are registered by whoever owns the
// breakers and bulkheads, next to New.
//
// # Names
//
// Every name starts with the namespace "relay" and follows
// namespace_subsystem_name_unit; counters end in _total, durations are in
// seconds. The contract fixes relay_breaker_state{breaker},
// relay_bulkhead_busy{bulkhead}, relay_bulkhead_rejected_total{bulkhead,reason}
// and relay_tasks_total{queue,outcome}. relay_algedonic_signals_total belongs
// to the algedonic package and is not registered here.
//
// # Errors
//
// Registration errors (a name registered twice, a clash of label sets) are
// returned, never panicked; a failed New or RegisterRuntime leaves the
// registerer as it found it. A collector that meets a value it cannot expose
// reports it as a collection error, which Handler logs past and serves the
// remaining metrics around.
package metrics

// Package algedonic raises the relay's algedonic signals: pain when
// something goes wrong (a breaker opens, a pool turns work away, a task is
// dead-lettered, health degrades, the broker blocks or is lost) and
// pleasure when it recovers. In the Viable System Model these are the
// signals that bypass the normal channels and reach the top at once; here
// they are JSON events on two topic exchanges, one per signal.
//
// # Events
//
// An Event is published as one JSON object with the fields signal,
// source, name, event, severity, intensity, reason, count, instance, at
// and details. "at" is UTC with milliseconds ("2026-11-29T14:00:00.123Z",
// TimeLayout); details is always an object, {} when empty. The routing key
// is "<source>.<name>.<event>": RoutingKey replaces '.', '#', '*' and
// white space inside each part by '_', so that a queue named
// "vsm.tasks.echo" gives "queue.vsm_tasks_echo.dead_lettered" and every
// key has exactly three words. Decode is the strict reader for clients
// and tests.
//
// # Intensity and severity
//
// The constructors are the one place where these are decided, so that
// every component reports on the same scale. Intensity is always in
// [0, 1]; NaN arguments count as 0.
//
//	breaker open (from closed)     pain      critical  0.5 + 0.5 * pressure
//	breaker open (from half_open)  pain      critical  0.75 + 0.25 * pressure
//	breaker closed                 pleasure  info      0.5
//	bulkhead rejected              pain      warning   share of recent checkouts rejected
//	target retry_budget_exhausted  pain      warning   max(0.3, share of calls refused a retry)
//	queue dead_lettered            pain      warning   0.5
//	health degraded                pain      warning   max(0.3, unhealthy share)
//	health unhealthy               pain      critical  max(0.8, unhealthy share)
//	health healthy                 pleasure  info      0.8 from unhealthy, else 0.4
//	amqp blocked                   pain      critical  0.8
//	amqp lost                      pain      critical  1
//	amqp restored                  pleasure  info      0.5 rising to 1 at 5m downtime
//
// A breaker's pressure is what it saw: the failure (or slow-call) rate
// over the window's calls, or how closely its failures fell within the
// window (see BreakerOpened). A failed recovery (open from half_open)
// hurts more than a first opening; a lost connection stops all work, a blocked one stops only
// acknowledgements. Health events are named "overall" and amqp events
// "broker".
//
// # Coalescing
//
// In an outage a pool may reject thousands of checkouts a second; one
// message each would bury the signal and the broker. So pain of a
// coalesced kind (by default bulkhead/rejected, queue/dead_lettered and
// target/retry_budget_exhausted; see WithCoalesced) is coalesced per
// (source, name, event), unless Config.Coalesce is zero, which turns
// coalescing off:
//
//   - the first occurrence of a key is sent at once, with count 1, and
//     opens a window of Config.Coalesce;
//   - further occurrences within the window are only counted;
//   - when the window ends, if anything was counted, one summary is sent
//     with count = how many, the latest occurrence's reason and details
//     and the highest intensity counted; that summary opens a new window;
//   - a window that ends with nothing counted is forgotten, and the next
//     occurrence is sent at once again.
//
// So a key produces at most one message per window. Window ends are
// noticed by Run, which looks every Coalesce/4, and by Emit itself for
// its own key; Flush sends every pending summary at once. Breaker, health
// and amqp events are never coalesced: each is a state change someone
// must see.
//
// # Delivery
//
// Emit never waits for the broker. Queued events wait in a bounded FIFO
// of Config.Buffer events; when it is full the oldest is dropped, counted
// in relay_algedonic_dropped_total and logged. Run publishes them in
// order, each only after the broker confirmed the one before; while the
// publisher fails it keeps the event and retries with a backoff doubling
// from 100ms to 5s, so events raised while the broker is away reach it,
// in order, once it is back. On shutdown, Flush waits until the queue is
// empty.
//
// SetConfig applies a reloaded configuration from the next event on: the
// exchanges, the coalescing window and the buffer's size (a smaller buffer
// drops its oldest events as an overflow does). The instance is fixed at
// NewEmitter.
//
// # Logs, listeners and metrics
//
// Every queued event is logged, at Warn for pain and Info for pleasure;
// occurrences counted into a window are logged at Debug. Subscribe adds
// listeners that see the same events as the broker. The metrics are
// relay_algedonic_signals_total{signal,source} (every occurrence,
// coalesced or not), relay_algedonic_published_total,
// relay_algedonic_dropped_total, relay_algedonic_publish_failures_total,
// relay_algedonic_coalesced_total and the gauge relay_algedonic_pending.
package algedonic

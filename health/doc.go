// Package health judges the relay's overall health from its broker
// connection, circuit breakers and bulkheads, serves it at GET /health,
// publishes it periodically, and raises an algedonic event whenever it
// changes.
//
// # Rules
//
// Evaluate is the whole rule set, a pure function. The relay is
//
//   - unhealthy while the broker is unreachable or blocks publishing, or
//     while every target breaker is open (and there is at least one):
//     then it can deliver nothing;
//   - degraded while any breaker is not closed (open or half_open), a
//     pool's utilization (busy/capacity) is at or above
//     DegradedUtilization, or a pool rejected work since the previous
//     check (its rejection counter grew);
//   - healthy otherwise.
//
// Report.Reasons lists every rule that fired, unhealthy ones first, in a
// stable order, for example "breaker llm_api is open" or "bulkhead
// api_agent 90% busy (threshold 80%)".
//
// # Checks
//
// Monitor.Check reads the sources and evaluates. The "previous check" of
// the rejection rule is the previous Check: Run's periodic checks count
// the rejections of one Interval each. Reads of /health evaluate too but
// leave that baseline alone, so a client polling /health every second
// cannot make the periodic check miss a pool's rejections (and the health
// flap). A pool seen for the first time counts every rejection since it
// was made.
//
// The status before the first evaluation is taken as healthy, so a relay
// that starts degraded says so once. Every change of the overall status
// after that raises exactly one event through the emit function: pain
// (health.overall.degraded, health.overall.unhealthy) or pleasure
// (health.overall.healthy); see algedonic.HealthChanged for intensity and
// severity. Evaluations that run at the same moment may hand their events
// to emit in either order.
//
// Monitor.Peek evaluates like a read of /health but changes nothing at
// all: no event, no log, no gauge, no baseline. It is for a page that
// shows the health live.
//
// Monitor.SetConfig applies a reloaded configuration: the exchange from
// the next report, degraded_utilization from the next evaluation, and a
// new interval by resetting Run's ticker. The instance is fixed at
// NewMonitor.
//
// # Reports
//
// GET /health answers the Report as JSON, 200 when healthy or degraded and
// 503 when unhealthy. Run publishes the same JSON every Interval to the
// health exchange with routing key "health.<instance>"; a failed publish
// is logged and counted in relay_health_publish_failures_total, and the
// next report follows on time. The gauge relay_health_status holds 0
// (healthy), 1 (degraded) or 2 (unhealthy). Times are written like event
// times, UTC with milliseconds ("2026-11-29T14:00:00.123Z").
package health

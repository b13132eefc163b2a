package algedonic

import (
	"math"
	"time"
)

// The constructors below are the relay's one place for the intensity and
// severity rules (see the package documentation). They leave Instance, At
// and Count for Emit to fill. Every intensity they return is in [0, 1],
// whatever the arguments (NaN counts as 0).

// Names of the events whose subject is the relay itself rather than one
// named breaker, pool or queue.
const (
	NameOverall = "overall" // health events
	NameBroker  = "broker"  // amqp events of the relay's own connection
)

// BreakerOpening is what a breaker saw when it opened, the facts its
// pain is graded by. The relay fills it from a breaker.Transition: every
// field has the same name there (FromHalfOpen is From == HalfOpen).
type BreakerOpening struct {
	FromHalfOpen bool
	// Failures within the window, against the failure_threshold that
	// opens the breaker by count.
	Failures, Threshold int
	// FailureSpan is the time from the oldest to the newest of Failures;
	// Window is the breaker's window_size.
	FailureSpan, Window time.Duration
	// Calls in the window, and the shares of them that failed or were
	// slow. Zero when the breaker has no rate threshold (it does not count
	// successes then).
	Calls                     int
	FailureRate, SlowCallRate float64
	// Origin is the peer instance whose opening caused this one; empty
	// when the breaker opened by itself.
	Origin string
}

// BreakerOpenedWith is the pain of a breaker opening, graded by what the
// breaker saw (o). A breaker that opens from half_open has failed its
// recovery probes after a whole reset timeout, so it hurts more than one
// that opens from closed:
//
//	intensity = 0.5  + 0.5  * pressure   from closed
//	intensity = 0.75 + 0.25 * pressure   from half_open
//	severity  = critical
//
// pressure, in [0, 1], is the largest of the failure rate and the
// slow-call rate over the window's calls (when they are known) and the
// burst of failures: Failures/Threshold (at most 1) times how closely they
// fell, 1 - FailureSpan/Window. failure_threshold failures within a
// moment of each other press hardest; the same number spread over the
// whole window barely more than a single one. Details carry "from",
// "failures", "threshold", "failure_rate" and "calls" (when known), and
// "origin" for an opening caused by a peer.
func BreakerOpenedWith(name, reason string, o BreakerOpening) Event {
	floor, from := 0.5, "closed"
	if o.FromHalfOpen {
		floor, from = 0.75, "half_open"
	}
	d := map[string]any{"from": from, "failures": o.Failures, "threshold": o.Threshold}
	var pressure float64
	if o.Calls > 0 || o.FailureRate > 0 || o.SlowCallRate > 0 {
		rate := clamp01(o.FailureRate)
		pressure = math.Max(rate, clamp01(o.SlowCallRate))
		d["failure_rate"] = rate
	}
	if o.Calls > 0 {
		d["calls"] = o.Calls
	}
	if o.Threshold > 0 && o.Failures > 1 && o.Window > 0 {
		fill := clamp01(float64(o.Failures) / float64(o.Threshold))
		closeness := clamp01(1 - float64(o.FailureSpan)/float64(o.Window))
		pressure = math.Max(pressure, fill*closeness)
	}
	if o.Origin != "" {
		d["origin"] = o.Origin
	}
	return Event{
		Signal: Pain, Source: SourceBreaker, Name: name, Event: EventOpen,
		Severity: Critical, Intensity: floor + (1-floor)*pressure, Reason: reason,
		Details: d,
	}
}

// BreakerClosed is the pleasure of a breaker closing after its probes
// succeeded: severity info, intensity 0.5.
func BreakerClosed(name, reason string) Event {
	return Event{
		Signal: Pleasure, Source: SourceBreaker, Name: name, Event: EventClosed,
		Severity: Info, Intensity: 0.5, Reason: reason,
	}
}

// BulkheadRejected is the pain of a pool turning work away (full, timed
// out or rate limited). Its intensity is rejectionRate, the share of
// recent checkouts that were rejected (bulkhead's RecentRejectionRate, not
// the lifetime counters, which a long healthy run would drown); severity
// warning. It is coalesced, and it is raised on the overload path, so it
// allocates nothing.
func BulkheadRejected(name, reason string, rejectionRate float64) Event {
	return Event{
		Signal: Pain, Source: SourceBulkhead, Name: name, Event: EventRejected,
		Severity: Warning, Intensity: clamp01(rejectionRate), Reason: reason,
	}
}

// Source and event of RetryBudgetExhausted.
const (
	SourceTarget              = "target"
	EventRetryBudgetExhausted = "retry_budget_exhausted"
)

// RetryBudgetExhausted is the pain of a target's retry budget being
// spent: a retryable failure skipped its in-process retries and went on to
// its next redelivery step (nothing is lost, but the target fails more
// often than the budget allows retries for). deniedShare is the share of
// the window's calls whose retry was refused. Severity warning, intensity
// max(0.3, deniedShare). It is coalesced (DefaultCoalesced), and it is
// raised on the overload path, so it allocates nothing.
func RetryBudgetExhausted(target, reason string, deniedShare float64) Event {
	return Event{
		Signal: Pain, Source: SourceTarget, Name: target, Event: EventRetryBudgetExhausted,
		Severity: Warning, Intensity: math.Max(0.3, clamp01(deniedShare)), Reason: reason,
	}
}

// DeadLettered is the pain of a task given up on: severity warning,
// intensity 0.5 (one lost task is noticeable; the count of a coalesced
// summary carries the volume).
func DeadLettered(queue, reason string) Event {
	return Event{
		Signal: Pain, Source: SourceQueue, Name: queue, Event: EventDeadLettered,
		Severity: Warning, Intensity: 0.5, Reason: reason,
	}
}

// HealthChanged is the event of the overall health moving from one status
// to another ("healthy", "degraded", "unhealthy"). unhealthyShare is the
// share of watched components in trouble, in [0, 1].
//
//	to degraded:   pain, warning,   intensity max(0.3, unhealthyShare)
//	to unhealthy:  pain, critical,  intensity max(0.8, unhealthyShare)
//	to healthy:    pleasure, info,  intensity 0.8 from unhealthy, else 0.4
//
// Any other to is treated as degraded (keeping its own event name), since
// a status the relay does not know is no reason for calm.
func HealthChanged(from, to, reason string, unhealthyShare float64) Event {
	share := clamp01(unhealthyShare)
	e := Event{
		Source: SourceHealth, Name: NameOverall, Event: to, Reason: reason,
		Details: map[string]any{"from": from, "to": to, "unhealthy_share": share},
	}
	switch to {
	case EventHealthy:
		e.Signal, e.Severity, e.Intensity = Pleasure, Info, 0.4
		if from == EventUnhealthy {
			e.Intensity = 0.8
		}
	case EventUnhealthy:
		e.Signal, e.Severity, e.Intensity = Pain, Critical, math.Max(0.8, share)
	default:
		e.Signal, e.Severity, e.Intensity = Pain, Warning, math.Max(0.3, share)
	}
	return e
}

// AMQPBlocked is the pain of the broker blocking the relay's publishing (a
// memory or disk alarm): nothing can be acked until it lifts. Severity
// critical, intensity 0.8.
func AMQPBlocked(reason string) Event {
	return Event{
		Signal: Pain, Source: SourceAMQP, Name: NameBroker, Event: EventBlocked,
		Severity: Critical, Intensity: 0.8, Reason: reason,
	}
}

// AMQPLost is the pain of losing the broker connection: the relay can do
// no work at all. Severity critical, intensity 1.
func AMQPLost(reason string) Event {
	return Event{
		Signal: Pain, Source: SourceAMQP, Name: NameBroker, Event: EventLost,
		Severity: Critical, Intensity: 1, Reason: reason,
	}
}

// restoredFullAfter is the downtime at which a restored connection is the
// greatest pleasure.
const restoredFullAfter = 5 * time.Minute

// AMQPRestored is the pleasure of the broker connection coming back (or
// unblocking) after downtime: severity info, intensity growing from 0.5
// for a blip to 1 for a downtime of five minutes or more.
func AMQPRestored(downtime time.Duration) Event {
	if downtime < 0 {
		downtime = 0
	}
	frac := math.Min(1, float64(downtime)/float64(restoredFullAfter))
	return Event{
		Signal: Pleasure, Source: SourceAMQP, Name: NameBroker, Event: EventRestored,
		Severity: Info, Intensity: 0.5 + 0.5*frac,
		Reason:  "broker connection restored after " + downtime.Round(time.Millisecond).String(),
		Details: map[string]any{"downtime_seconds": downtime.Seconds()},
	}
}

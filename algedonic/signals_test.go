package algedonic

import (
	"math"
	"testing"
	"time"
)

func TestConstructors(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name      string
		ev        Event
		signal    Signal
		severity  Severity
		source    string
		evName    string
		event     string
		intensity float64
	}{
		// Opened by count, graded by how closely the failures fell.
		{"breaker opened by a slow drip", BreakerOpenedWith("llm_api", "r", BreakerOpening{Failures: 5, Threshold: 5, FailureSpan: time.Minute, Window: time.Minute}), Pain, Critical, "breaker", "llm_api", "open", 0.5},
		{"breaker opened by a burst", BreakerOpenedWith("llm_api", "r", BreakerOpening{Failures: 5, Threshold: 5, FailureSpan: 0, Window: time.Minute}), Pain, Critical, "breaker", "llm_api", "open", 1},
		{"breaker opened by failures over half the window", BreakerOpenedWith("b", "r", BreakerOpening{Failures: 4, Threshold: 4, FailureSpan: 30 * time.Second, Window: time.Minute}), Pain, Critical, "breaker", "b", "open", 0.75},
		{"breaker opened from half_open by a burst", BreakerOpenedWith("b", "r", BreakerOpening{FromHalfOpen: true, Failures: 3, Threshold: 3, Window: time.Minute}), Pain, Critical, "breaker", "b", "open", 1},
		{"breaker opened from half_open by a drip", BreakerOpenedWith("b", "r", BreakerOpening{FromHalfOpen: true, Failures: 3, Threshold: 3, FailureSpan: time.Hour, Window: time.Minute}), Pain, Critical, "breaker", "b", "open", 0.75},
		{"breaker opened by a single failure", BreakerOpenedWith("b", "r", BreakerOpening{Failures: 1, Threshold: 1, Window: time.Minute}), Pain, Critical, "breaker", "b", "open", 0.5},
		{"breaker opened with half the threshold", BreakerOpenedWith("b", "r", BreakerOpening{Failures: 2, Threshold: 4, Window: time.Minute}), Pain, Critical, "breaker", "b", "open", 0.75},
		{"breaker opened no window", BreakerOpenedWith("b", "r", BreakerOpening{Failures: 2, Threshold: 2}), Pain, Critical, "breaker", "b", "open", 0.5},
		// Opened by rate, graded by the rates over the window's calls.
		{"breaker opened by failure rate", BreakerOpenedWith("b", "r", BreakerOpening{Failures: 1, Threshold: 100, Calls: 10, FailureRate: 0.6, Window: time.Minute}), Pain, Critical, "breaker", "b", "open", 0.8},
		{"breaker opened by slow-call rate", BreakerOpenedWith("b", "r", BreakerOpening{Calls: 10, SlowCallRate: 1, Window: time.Minute}), Pain, Critical, "breaker", "b", "open", 1},
		{"breaker opened rate above 1", BreakerOpenedWith("b", "r", BreakerOpening{Calls: 1, FailureRate: 7, FromHalfOpen: true}), Pain, Critical, "breaker", "b", "open", 1},
		{"breaker opened NaN rate", BreakerOpenedWith("b", "r", BreakerOpening{Calls: 1, FailureRate: nan, SlowCallRate: nan}), Pain, Critical, "breaker", "b", "open", 0.5},
		{"breaker opened negative everything", BreakerOpenedWith("b", "r", BreakerOpening{Failures: -3, Threshold: -1, FailureSpan: -time.Hour, Window: -time.Minute, Calls: -1, FailureRate: -3}), Pain, Critical, "breaker", "b", "open", 0.5},
		{"breaker opened span negative", BreakerOpenedWith("b", "r", BreakerOpening{Failures: 2, Threshold: 2, FailureSpan: -time.Hour, Window: time.Minute}), Pain, Critical, "breaker", "b", "open", 1},
		{"breaker opened by its rate alone", BreakerOpenedWith("b", "r", BreakerOpening{FailureRate: 0.5, FromHalfOpen: false}), Pain, Critical, "breaker", "b", "open", 0.75},
		{"breaker opened from half_open by its rate alone", BreakerOpenedWith("b", "r", BreakerOpening{FailureRate: 0, FromHalfOpen: true}), Pain, Critical, "breaker", "b", "open", 0.75},
		{"retry budget exhausted", RetryBudgetExhausted("echo", "retry budget spent", 0.1), Pain, Warning, "target", "echo", "retry_budget_exhausted", 0.3},
		{"retry budget exhausted widely", RetryBudgetExhausted("echo", "r", 0.9), Pain, Warning, "target", "echo", "retry_budget_exhausted", 0.9},
		{"retry budget exhausted NaN", RetryBudgetExhausted("echo", "r", nan), Pain, Warning, "target", "echo", "retry_budget_exhausted", 0.3},
		{"retry budget exhausted above 1", RetryBudgetExhausted("echo", "r", 2), Pain, Warning, "target", "echo", "retry_budget_exhausted", 1},
		{"breaker closed", BreakerClosed("b", "r"), Pleasure, Info, "breaker", "b", "closed", 0.5},
		{"bulkhead rejected", BulkheadRejected("api_agent", "full", 0.25), Pain, Warning, "bulkhead", "api_agent", "rejected", 0.25},
		{"bulkhead rejected above 1", BulkheadRejected("p", "full", 1.5), Pain, Warning, "bulkhead", "p", "rejected", 1},
		{"bulkhead rejected below 0", BulkheadRejected("p", "full", -1), Pain, Warning, "bulkhead", "p", "rejected", 0},
		{"bulkhead rejected NaN", BulkheadRejected("p", "full", nan), Pain, Warning, "bulkhead", "p", "rejected", 0},
		{"dead lettered", DeadLettered("vsm.tasks.echo", "HTTP 404"), Pain, Warning, "queue", "vsm.tasks.echo", "dead_lettered", 0.5},
		{"health degraded", HealthChanged("healthy", "degraded", "r", 0.1), Pain, Warning, "health", "overall", "degraded", 0.3},
		{"health degraded wide", HealthChanged("healthy", "degraded", "r", 0.6), Pain, Warning, "health", "overall", "degraded", 0.6},
		{"health unhealthy", HealthChanged("degraded", "unhealthy", "r", 0.2), Pain, Critical, "health", "overall", "unhealthy", 0.8},
		{"health unhealthy share above 1", HealthChanged("degraded", "unhealthy", "r", 3), Pain, Critical, "health", "overall", "unhealthy", 1},
		{"health restored from unhealthy", HealthChanged("unhealthy", "healthy", "r", 0), Pleasure, Info, "health", "overall", "healthy", 0.8},
		{"health restored from degraded", HealthChanged("degraded", "healthy", "r", 0), Pleasure, Info, "health", "overall", "healthy", 0.4},
		{"health unknown status", HealthChanged("healthy", "strange", "r", nan), Pain, Warning, "health", "overall", "strange", 0.3},
		{"amqp blocked", AMQPBlocked("memory alarm"), Pain, Critical, "amqp", "broker", "blocked", 0.8},
		{"amqp lost", AMQPLost("EOF"), Pain, Critical, "amqp", "broker", "lost", 1},
		{"amqp restored blip", AMQPRestored(0), Pleasure, Info, "amqp", "broker", "restored", 0.5},
		{"amqp restored negative", AMQPRestored(-time.Second), Pleasure, Info, "amqp", "broker", "restored", 0.5},
		{"amqp restored after 150s", AMQPRestored(150 * time.Second), Pleasure, Info, "amqp", "broker", "restored", 0.75},
		{"amqp restored after an hour", AMQPRestored(time.Hour), Pleasure, Info, "amqp", "broker", "restored", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := tt.ev
			if ev.Signal != tt.signal || ev.Severity != tt.severity || ev.Source != tt.source ||
				ev.Name != tt.evName || ev.Event != tt.event {
				t.Fatalf("got %s/%s %s.%s.%s, want %s/%s %s.%s.%s", ev.Signal, ev.Severity, ev.Source, ev.Name, ev.Event,
					tt.signal, tt.severity, tt.source, tt.evName, tt.event)
			}
			if ev.Intensity != tt.intensity {
				t.Fatalf("intensity = %v, want %v", ev.Intensity, tt.intensity)
			}
			if !(ev.Intensity >= 0 && ev.Intensity <= 1) {
				t.Fatalf("intensity %v outside [0, 1]", ev.Intensity)
			}
			ev.Count, ev.At = 1, time.Now()
			if err := ev.validate(); err != nil {
				t.Fatalf("constructed event is invalid: %v", err)
			}
		})
	}
}

func TestConstructorDetails(t *testing.T) {
	if d := BreakerOpenedWith("b", "r", BreakerOpening{FailureRate: 0.3, FromHalfOpen: true}).Details; d["from"] != "half_open" || d["failure_rate"] != 0.3 || d["calls"] != nil {
		t.Errorf("BreakerOpenedWith details = %v", d)
	}
	d := BreakerOpenedWith("b", "r", BreakerOpening{Failures: 3, Threshold: 5, Calls: 9, FailureRate: 1.0 / 3, Origin: "relay-b"}).Details
	if d["from"] != "closed" || d["failures"] != 3 || d["threshold"] != 5 || d["calls"] != 9 || d["failure_rate"] != 1.0/3 || d["origin"] != "relay-b" {
		t.Errorf("BreakerOpenedWith details = %v", d)
	}
	if d := BreakerOpenedWith("b", "r", BreakerOpening{Failures: 5, Threshold: 5}).Details; len(d) != 3 {
		t.Errorf("BreakerOpenedWith details of a local opening by count = %v, want from, failures, threshold", d)
	}
	if d := HealthChanged("healthy", "degraded", "r", 0.25).Details; d["from"] != "healthy" || d["to"] != "degraded" || d["unhealthy_share"] != 0.25 {
		t.Errorf("HealthChanged details = %v", d)
	}
	ev := AMQPRestored(1500 * time.Millisecond)
	if ev.Details["downtime_seconds"] != 1.5 || ev.Reason != "broker connection restored after 1.5s" {
		t.Errorf("AMQPRestored = %+v", ev)
	}
}

// A pool rejecting under overload raises BulkheadRejected on every
// rejection, so building the event must cost nothing.
func TestBulkheadRejectedDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = BulkheadRejected("api_agent", "full", 0.5) }); n != 0 {
		t.Fatalf("BulkheadRejected allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = RetryBudgetExhausted("echo", "spent", 0.5) }); n != 0 {
		t.Fatalf("RetryBudgetExhausted allocates %v times", n)
	}
}

// An exhausted retry budget comes in storms during an outage, so it is
// coalesced by default.
func TestRetryBudgetExhaustedCoalesced(t *testing.T) {
	ev := RetryBudgetExhausted("echo", "spent", 0.5)
	for _, k := range DefaultCoalesced() {
		if k.Source == ev.Source && k.Event == ev.Event {
			return
		}
	}
	t.Fatalf("%s/%s is not among DefaultCoalesced %v", ev.Source, ev.Event, DefaultCoalesced())
}

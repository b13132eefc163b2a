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
		{"breaker opened low rate", BreakerOpened("llm_api", "r", 0.2, false), Pain, Critical, "breaker", "llm_api", "open", 0.5},
		{"breaker opened high rate", BreakerOpened("llm_api", "r", 0.9, false), Pain, Critical, "breaker", "llm_api", "open", 0.9},
		{"breaker opened from half_open", BreakerOpened("llm_api", "r", 0.2, true), Pain, Critical, "breaker", "llm_api", "open", 0.75},
		{"breaker opened rate above 1", BreakerOpened("b", "r", 7, true), Pain, Critical, "breaker", "b", "open", 1},
		{"breaker opened NaN rate", BreakerOpened("b", "r", nan, false), Pain, Critical, "breaker", "b", "open", 0.5},
		{"breaker opened negative rate", BreakerOpened("b", "r", -3, false), Pain, Critical, "breaker", "b", "open", 0.5},
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
	if d := BreakerOpened("b", "r", 0.3, true).Details; d["from"] != "half_open" || d["failure_rate"] != 0.3 {
		t.Errorf("BreakerOpened details = %v", d)
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
}

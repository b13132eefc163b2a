package health

import (
	"reflect"
	"testing"
)

func TestEvaluate(t *testing.T) {
	up := AMQPStatus{Connected: true}
	closed := BreakerStatus{State: "closed"}
	open := BreakerStatus{State: "open"}
	halfOpen := BreakerStatus{State: "half_open"}
	pool := func(busy, capacity int) BulkheadStatus {
		return BulkheadStatus{Busy: busy, Available: capacity - busy, Capacity: capacity}
	}
	tests := []struct {
		name    string
		in      Inputs
		want    Status
		reasons []string
	}{
		{
			name: "all well",
			in: Inputs{AMQP: up, Breakers: map[string]BreakerStatus{"a": closed}, Bulkheads: map[string]BulkheadStatus{"p": pool(3, 30)},
				TargetBreakers: []string{"a"}, DegradedUtilization: 0.8},
			want: Healthy,
		},
		{name: "nothing watched but the broker", in: Inputs{AMQP: up}, want: Healthy},
		{name: "broker unreachable", in: Inputs{}, want: Unhealthy, reasons: []string{"broker is unreachable"}},
		{name: "broker blocks", in: Inputs{AMQP: AMQPStatus{Connected: true, Blocked: true}}, want: Unhealthy, reasons: []string{"broker blocks publishing"}},
		{name: "unreachable wins over blocked", in: Inputs{AMQP: AMQPStatus{Blocked: true}}, want: Unhealthy, reasons: []string{"broker is unreachable"}},
		{
			name: "every target breaker open",
			in:   Inputs{AMQP: up, Breakers: map[string]BreakerStatus{"b": open, "a": open, "amqp": closed}, TargetBreakers: []string{"b", "a"}},
			want: Unhealthy, reasons: []string{"every target breaker is open (a, b)", "breaker a is open", "breaker b is open"},
		},
		{
			name: "target listed twice",
			in:   Inputs{AMQP: up, Breakers: map[string]BreakerStatus{"a": open}, TargetBreakers: []string{"a", "a"}},
			want: Unhealthy, reasons: []string{"every target breaker is open (a)", "breaker a is open"},
		},
		{
			name: "one of two targets open",
			in:   Inputs{AMQP: up, Breakers: map[string]BreakerStatus{"a": open, "b": closed}, TargetBreakers: []string{"a", "b"}},
			want: Degraded, reasons: []string{"breaker a is open"},
		},
		{
			name: "a half-open target is not open",
			in:   Inputs{AMQP: up, Breakers: map[string]BreakerStatus{"a": open, "b": halfOpen}, TargetBreakers: []string{"a", "b"}},
			want: Degraded, reasons: []string{"breaker a is open", "breaker b is half_open"},
		},
		{
			name: "an unknown target is not open",
			in:   Inputs{AMQP: up, Breakers: map[string]BreakerStatus{"a": open}, TargetBreakers: []string{"a", "ghost"}},
			want: Degraded, reasons: []string{"breaker a is open"},
		},
		{
			name: "no targets: open breakers only degrade",
			in:   Inputs{AMQP: up, Breakers: map[string]BreakerStatus{"a": open}},
			want: Degraded, reasons: []string{"breaker a is open"},
		},
		{
			name: "half-open breaker",
			in:   Inputs{AMQP: up, Breakers: map[string]BreakerStatus{"llm_api": halfOpen}},
			want: Degraded, reasons: []string{"breaker llm_api is half_open"},
		},
		{
			name: "pool at the threshold",
			in:   Inputs{AMQP: up, Bulkheads: map[string]BulkheadStatus{"api_agent": pool(16, 20)}, DegradedUtilization: 0.8},
			want: Degraded, reasons: []string{"bulkhead api_agent 80% busy (threshold 80%)"},
		},
		{
			name: "pool above the threshold",
			in:   Inputs{AMQP: up, Bulkheads: map[string]BulkheadStatus{"api_agent": pool(18, 20)}, DegradedUtilization: 0.8},
			want: Degraded, reasons: []string{"bulkhead api_agent 90% busy (threshold 80%)"},
		},
		{
			name: "fractional percentages",
			in:   Inputs{AMQP: up, Bulkheads: map[string]BulkheadStatus{"p": pool(2, 3)}, DegradedUtilization: 0.655},
			want: Degraded, reasons: []string{"bulkhead p 66.7% busy (threshold 65.5%)"},
		},
		{
			name: "pool just below the threshold",
			in:   Inputs{AMQP: up, Bulkheads: map[string]BulkheadStatus{"api_agent": pool(15, 20)}, DegradedUtilization: 0.8},
			want: Healthy,
		},
		{
			name: "utilization rule off",
			in:   Inputs{AMQP: up, Bulkheads: map[string]BulkheadStatus{"p": pool(20, 20)}},
			want: Healthy,
		},
		{
			name: "pool without capacity",
			in:   Inputs{AMQP: up, Bulkheads: map[string]BulkheadStatus{"p": {}}, DegradedUtilization: 0.8},
			want: Healthy,
		},
		{
			name: "pool rejected since the last check",
			in: Inputs{AMQP: up, Bulkheads: map[string]BulkheadStatus{"p": pool(0, 20)}, DegradedUtilization: 0.8,
				NewRejections: map[string]uint64{"p": 12}},
			want: Degraded, reasons: []string{"bulkhead p rejected 12 since the last check"},
		},
		{
			name: "no new rejections",
			in: Inputs{AMQP: up, Bulkheads: map[string]BulkheadStatus{"p": {Capacity: 20, Rejected: 500}},
				NewRejections: map[string]uint64{"p": 0}},
			want: Healthy,
		},
		{
			name: "busy and rejecting",
			in: Inputs{AMQP: up, Bulkheads: map[string]BulkheadStatus{"p": pool(20, 20)}, DegradedUtilization: 0.8,
				NewRejections: map[string]uint64{"p": 1}},
			want: Degraded, reasons: []string{"bulkhead p 100% busy (threshold 80%)", "bulkhead p rejected 1 since the last check"},
		},
		{
			name: "everything at once, in order",
			in: Inputs{
				AMQP:      AMQPStatus{Connected: true, Blocked: true},
				Breakers:  map[string]BreakerStatus{"z": open, "m": closed, "b": halfOpen},
				Bulkheads: map[string]BulkheadStatus{"y": pool(9, 10), "x": pool(10, 10)}, DegradedUtilization: 0.9,
				NewRejections: map[string]uint64{"y": 3, "ghost": 4},
			},
			want: Unhealthy,
			reasons: []string{"broker blocks publishing", "breaker b is half_open", "breaker z is open",
				"bulkhead x 100% busy (threshold 90%)", "bulkhead y 90% busy (threshold 90%)", "bulkhead y rejected 3 since the last check"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reasons := Evaluate(tt.in)
			if got != tt.want || !reflect.DeepEqual(reasons, tt.reasons) {
				t.Fatalf("Evaluate = %s %q, want %s %q", got, reasons, tt.want, tt.reasons)
			}
		})
	}
}

func TestEvaluateShare(t *testing.T) {
	in := Inputs{
		AMQP:          AMQPStatus{Connected: true},
		Breakers:      map[string]BreakerStatus{"a": {State: "open"}, "b": {State: "closed"}, "c": {State: "half_open"}},
		Bulkheads:     map[string]BulkheadStatus{"p": {Busy: 10, Capacity: 10}, "q": {Capacity: 10}, "r": {Capacity: 10}},
		NewRejections: map[string]uint64{"p": 1},
		// p is busy and rejecting: one troubled component, not two.
		DegradedUtilization: 0.5,
	}
	// Troubled: a, c, p; watched: the broker, 3 breakers, 3 pools.
	if _, _, share := evaluate(in); share != 3.0/7 {
		t.Fatalf("share = %v, want 3/7", share)
	}
	if _, _, share := evaluate(Inputs{}); share != 1 {
		t.Fatalf("share with only the broker, down = %v, want 1", share)
	}
}

func TestStatusLevel(t *testing.T) {
	for s, want := range map[Status]int{Healthy: 0, Degraded: 1, Unhealthy: 2, "": 2} {
		if got := s.Level(); got != want {
			t.Errorf("%q.Level() = %d, want %d", s, got, want)
		}
	}
}

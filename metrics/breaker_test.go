package metrics

import (
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vsm-relay/relay/breaker"
)

func TestBreakerCollectorExposesStateAndFailures(t *testing.T) {
	tests := []struct {
		name      string
		snapshots []breaker.Snapshot
		want      string
	}{
		{
			name: "one of each state",
			snapshots: []breaker.Snapshot{
				{Name: "llm_api", State: breaker.Open, FailureCount: 3, SuccessCount: 0, Transitions: 1},
				{Name: "external_api", State: breaker.HalfOpen, FailureCount: 5, SuccessCount: 2, Transitions: 2},
				{Name: "amqp", State: breaker.Closed, FailureCount: 1},
			},
			want: `
# HELP relay_breaker_state Circuit breaker state: 0 closed, 1 half_open, 2 open.
# TYPE relay_breaker_state gauge
relay_breaker_state{breaker="amqp"} 0
relay_breaker_state{breaker="external_api"} 1
relay_breaker_state{breaker="llm_api"} 2
# HELP relay_breaker_failures Failures within the circuit breaker's window.
# TYPE relay_breaker_failures gauge
relay_breaker_failures{breaker="amqp"} 1
relay_breaker_failures{breaker="external_api"} 5
relay_breaker_failures{breaker="llm_api"} 3
`,
		},
		{
			name:      "no breakers",
			snapshots: nil,
			want:      ``,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewBreakerCollector(func() []breaker.Snapshot { return tt.snapshots })
			if err := testutil.CollectAndCompare(c, strings.NewReader(tt.want)); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestBreakerCollectorReadsSnapshotsAtEveryScrape(t *testing.T) {
	state := breaker.Closed
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(NewBreakerCollector(func() []breaker.Snapshot {
		return []breaker.Snapshot{{Name: "llm_api", State: state}}
	})); err != nil {
		t.Fatal(err)
	}
	for _, s := range []breaker.State{breaker.Closed, breaker.Open, breaker.HalfOpen, breaker.Closed} {
		state = s
		want := `
# HELP relay_breaker_state Circuit breaker state: 0 closed, 1 half_open, 2 open.
# TYPE relay_breaker_state gauge
relay_breaker_state{breaker="llm_api"} ` + strconv.Itoa(int(s)) + "\n"
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "relay_breaker_state"); err != nil {
			t.Errorf("state %v: %v", s, err)
		}
	}
}

func TestBreakerCollectorWithNilFuncExposesNothing(t *testing.T) {
	if err := testutil.CollectAndCompare(NewBreakerCollector(nil), strings.NewReader(``)); err != nil {
		t.Error(err)
	}
}

func TestBreakerCollectorReportsABadNameAsAnErrorNotAPanic(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(NewBreakerCollector(func() []breaker.Snapshot {
		return []breaker.Snapshot{{Name: "bad\xff"}, {Name: "good", State: breaker.Open}}
	})); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err == nil || !strings.Contains(err.Error(), "relay_breaker_state") {
		t.Fatalf("Gather: got error %v, want one about relay_breaker_state", err)
	}
	var states int
	for _, mf := range mfs {
		if mf.GetName() == "relay_breaker_state" {
			states = len(mf.GetMetric())
		}
	}
	if states != 1 {
		t.Errorf("relay_breaker_state: got %d series, want the good breaker's 1", states)
	}
}

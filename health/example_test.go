package health_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/health"
)

func ExampleEvaluate() {
	status, reasons := health.Evaluate(health.Inputs{
		AMQP:                health.AMQPStatus{Connected: true},
		Breakers:            map[string]health.BreakerStatus{"llm_api": {State: "open"}, "external_api": {State: "closed"}},
		Bulkheads:           map[string]health.BulkheadStatus{"api_agent": {Busy: 18, Available: 2, Capacity: 20}},
		TargetBreakers:      []string{"external_api", "llm_api"},
		DegradedUtilization: 0.8,
	})
	fmt.Println(status)
	for _, r := range reasons {
		fmt.Println(r)
	}
	// Output:
	// degraded
	// breaker llm_api is open
	// bulkhead api_agent 90% busy (threshold 80%)
}

func ExampleMonitor_Handler() {
	m, err := health.NewMonitor(health.Config{Instance: "relay-7f3a"}, health.Sources{
		Breakers: func() []breaker.Snapshot {
			return []breaker.Snapshot{{Name: "external_api", State: breaker.Open}}
		},
		AMQP:           func() health.AMQPStatus { return health.AMQPStatus{Connected: true} },
		TargetBreakers: []string{"external_api"},
	}, func(ev algedonic.Event) { fmt.Println("event:", ev.RoutingKey(), ev.Severity) }, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
	fmt.Println(rec.Code)
	// Output:
	// event: health.overall.unhealthy critical
	// 503
}

package health

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestReportJSON(t *testing.T) {
	opened := time.Date(2026, 11, 29, 15, 59, 0, 5e6, time.FixedZone("CET", 3600))
	r := Report{
		Overall: Degraded, Instance: "relay-7f3a",
		At:   time.Date(2026, 11, 29, 14, 0, 0, 123456789, time.UTC),
		AMQP: AMQPStatus{Connected: true},
		CircuitBreakers: map[string]BreakerStatus{
			"llm_api": {State: "open", FailureCount: 3, LastFailure: "HTTP 503", OpenedAt: &opened},
			"amqp":    {State: "closed"},
		},
		Bulkheads: map[string]BulkheadStatus{"worker_agent": {Available: 28, Busy: 2, Waiting: 1, Capacity: 30, Rejected: 4}},
		Reasons:   []string{"breaker llm_api is open"},
	}
	want := `{"overall":"degraded","instance":"relay-7f3a","at":"2026-11-29T14:00:00.123Z",` +
		`"amqp":{"connected":true,"blocked":false},` +
		`"circuit_breakers":{"amqp":{"state":"closed","failure_count":0,"success_count":0},` +
		`"llm_api":{"state":"open","failure_count":3,"success_count":0,"last_failure":"HTTP 503","opened_at":"2026-11-29T14:59:00.005Z"}},` +
		`"bulkheads":{"worker_agent":{"available":28,"busy":2,"waiting":1,"capacity":30,"rejected":4}},` +
		`"reasons":["breaker llm_api is open"]}`
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}

	// relay status reads the report back with encoding/json alone.
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.At.Equal(time.Date(2026, 11, 29, 14, 0, 0, 123e6, time.UTC)) || !back.CircuitBreakers["llm_api"].OpenedAt.Equal(opened) {
		t.Fatalf("times read back: %v, %v", back.At, back.CircuitBreakers["llm_api"].OpenedAt)
	}
	back.At, r.At = time.Time{}, time.Time{}
	back.CircuitBreakers["llm_api"], r.CircuitBreakers["llm_api"] = BreakerStatus{}, BreakerStatus{}
	if !reflect.DeepEqual(back, r) {
		t.Fatalf("read back %+v\nwant %+v", back, r)
	}
}

func TestReportJSONEmpty(t *testing.T) {
	b, err := json.Marshal(Report{Overall: Healthy, At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"overall":"healthy","instance":"","at":"2026-01-01T00:00:00.000Z","amqp":{"connected":false,"blocked":false},"circuit_breakers":{},"bulkheads":{}}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}

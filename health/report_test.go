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

func TestReportJSONClusterNodes(t *testing.T) {
	conns := map[string]ConnStatus{
		"consume":               {Connected: true, Node: "rmq-1:5672"},
		"publish":               {Connected: true, Node: "rmq-2:5672", Blocked: true},
		"outbound vsm.outbound": {Connected: false},
	}
	r := Report{Overall: Unhealthy, At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		AMQP: AMQPStatus{Connected: true, Blocked: true, Node: NodesOf(conns, "consume", "publish"), Connections: conns}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"overall":"unhealthy","instance":"","at":"2026-01-01T00:00:00.000Z",` +
		`"amqp":{"connected":true,"blocked":true,"node":"rmq-1:5672,rmq-2:5672","connections":{` +
		`"consume":{"connected":true,"node":"rmq-1:5672"},` +
		`"outbound vsm.outbound":{"connected":false},` +
		`"publish":{"connected":true,"node":"rmq-2:5672","blocked":true}}},` +
		`"circuit_breakers":{},"bulkheads":{}}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.AMQP, r.AMQP) {
		t.Fatalf("read back %+v\nwant %+v", back.AMQP, r.AMQP)
	}
}

func TestNodesOf(t *testing.T) {
	conns := map[string]ConnStatus{
		"consume": {Connected: true, Node: "rmq-1:5672"},
		"publish": {Connected: true, Node: "rmq-1:5672"},
		"other":   {Connected: true, Node: "rmq-0:5672"},
		"down":    {},
	}
	cases := []struct {
		names []string
		want  string
	}{
		{nil, ""},
		{[]string{"consume", "publish"}, "rmq-1:5672"},
		{[]string{"other", "consume", "publish"}, "rmq-0:5672,rmq-1:5672"},
		{[]string{"publish", "other"}, "rmq-1:5672,rmq-0:5672"},
		{[]string{"down", "missing"}, ""},
		{[]string{"down", "consume"}, "rmq-1:5672"},
	}
	for _, c := range cases {
		if got := NodesOf(conns, c.names...); got != c.want {
			t.Errorf("NodesOf(%q) = %q, want %q", c.names, got, c.want)
		}
	}
}

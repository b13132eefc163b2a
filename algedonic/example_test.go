package algedonic_test

import (
	"context"
	"fmt"
	"time"

	"github.com/vsm-relay/relay/algedonic"
)

func ExampleEvent_RoutingKey() {
	ev := algedonic.DeadLettered("vsm.tasks.echo", "HTTP 404 from echo")
	fmt.Println(ev.RoutingKey())
	// Output: queue.vsm_tasks_echo.dead_lettered
}

func ExampleDecode() {
	ev, err := algedonic.Decode([]byte(`{"signal":"pain","source":"breaker","name":"llm_api","event":"open",
		"severity":"critical","intensity":0.8,"reason":"3 failures within 60s; last: HTTP 503",
		"count":1,"instance":"relay-7f3a","at":"2026-11-29T14:00:00.123Z","details":{}}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ev.Signal, ev.RoutingKey(), ev.Intensity, ev.At.Format(time.StampMilli))

	_, err = algedonic.Decode([]byte(`{"signal":"pain","source":"breaker","name":"llm_api","event":"open",
		"severity":"critical","intensity":1.5,"count":1,"at":"2026-11-29T14:00:00.123Z"}`))
	fmt.Println(err)
	// Output:
	// pain breaker.llm_api.open 0.8 Nov 29 14:00:00.123
	// algedonic: invalid event: intensity 1.5 outside [0, 1]
}

// printPublisher stands in for the broker: it prints what it is asked to
// publish and confirms at once.
type printPublisher struct{}

func (printPublisher) Publish(_ context.Context, exchange, key string, body []byte) error {
	ev, err := algedonic.Decode(body)
	if err != nil {
		return err
	}
	fmt.Println(exchange, key, "count", ev.Count)
	return nil
}

func ExampleEmitter() {
	e, err := algedonic.NewEmitter(algedonic.Config{Instance: "relay-7f3a", Coalesce: time.Minute}, printPublisher{})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()

	e.Emit(algedonic.BreakerOpenedWith("llm_api", "3 failures within 60s; last: HTTP 503",
		algedonic.BreakerOpening{Failures: 3, Threshold: 3, FailureSpan: 30 * time.Second, Window: time.Minute}))
	// A storm of rejections: the first is sent at once, the rest counted.
	for range 100 {
		e.Emit(algedonic.BulkheadRejected("api_agent", "pool full", 1))
	}
	// On shutdown Flush sends the pending count and waits for the broker.
	if err := e.Flush(ctx); err != nil {
		fmt.Println(err)
	}
	cancel()
	<-done
	// Output:
	// vsm.algedonic.pain breaker.llm_api.open count 1
	// vsm.algedonic.pain bulkhead.api_agent.rejected count 1
	// vsm.algedonic.pain bulkhead.api_agent.rejected count 99
}

// An opening is graded by what the breaker saw: five failures within two
// seconds of a one-minute window press almost as hard as they can.
func ExampleBreakerOpenedWith() {
	ev := algedonic.BreakerOpenedWith("llm_api", "5 failures within 60s; last: HTTP 503", algedonic.BreakerOpening{
		Failures: 5, Threshold: 5, FailureSpan: 2 * time.Second, Window: time.Minute,
	})
	fmt.Println(ev.RoutingKey(), ev.Severity, fmt.Sprintf("%.2f", ev.Intensity))
	// Output: breaker.llm_api.open critical 0.98
}

func ExampleRetryBudgetExhausted() {
	ev := algedonic.RetryBudgetExhausted("echo", "retry budget spent: 30 retries for 100 calls within 10s", 0.4)
	fmt.Println(ev.RoutingKey(), ev.Signal, ev.Severity, ev.Intensity)
	// Output: target.echo.retry_budget_exhausted pain warning 0.4
}

func ExampleEmitter_SetConfig() {
	e, err := algedonic.NewEmitter(algedonic.Config{Coalesce: time.Minute}, printPublisher{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for range 3 {
		e.Emit(algedonic.BulkheadRejected("api_agent", "pool full", 1))
	}
	// A reload turns coalescing off and moves pain to another exchange:
	// the count so far is sent at once, later rejections one by one.
	if err := e.SetConfig(algedonic.Config{PainExchange: "ops.pain"}); err != nil {
		fmt.Println(err)
		return
	}
	e.Emit(algedonic.BulkheadRejected("api_agent", "pool full", 1))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	if err := e.Flush(ctx); err != nil {
		fmt.Println(err)
	}
	cancel()
	<-done
	// Output:
	// ops.pain bulkhead.api_agent.rejected count 1
	// ops.pain bulkhead.api_agent.rejected count 2
	// ops.pain bulkhead.api_agent.rejected count 1
}

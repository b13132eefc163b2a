package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/clock"
)

func ExampleBreaker_Call() {
	b, err := breaker.New("llm_api", breaker.Settings{FailureThreshold: 2, Timeout: 30 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	b.OnStateChange(func(t breaker.Transition) {
		fmt.Printf("%s: %s -> %s (%s)\n", t.Breaker, t.From, t.To, t.Reason)
	})
	unavailable := errors.New("HTTP 503")
	for range 3 {
		err := b.Call(context.Background(), func(ctx context.Context) error {
			return unavailable // the downstream call, bounded by ctx
		})
		if errors.Is(err, breaker.ErrOpen) {
			fmt.Println("not called: the breaker is open")
		}
	}
	// Output:
	// llm_api: closed -> open (2 failures within 60s; last: HTTP 503)
	// not called: the breaker is open
}

func ExampleBreaker_Allow() {
	fc := clock.NewFake(time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC))
	b, _ := breaker.New("external_api", breaker.Settings{FailureThreshold: 1, SuccessThreshold: 1},
		breaker.WithClock(fc))

	// do stands for a request whose result the caller classifies itself:
	// a 4xx is the caller's fault and says nothing of the downstream.
	do := func(status int) {
		p, err := b.Allow()
		if err != nil {
			fmt.Println("rejected:", err)
			return
		}
		switch {
		case status >= 500:
			b.Done(p, breaker.Failure, fmt.Errorf("HTTP %d", status))
		case status >= 400:
			b.Done(p, breaker.Neutral, nil)
		default:
			b.Done(p, breaker.Success, nil)
		}
		fmt.Println(status, "->", b.State())
	}
	do(404)
	do(503)
	do(200)
	s := b.Snapshot()
	fmt.Println("retry at", s.RetryAt.Format(time.TimeOnly), "after", s.LastFailure)
	fc.Advance(time.Minute)
	do(200)
	// Output:
	// 404 -> closed
	// 503 -> open
	// rejected: circuit breaker is open
	// retry at 14:01:00 after HTTP 503
	// 200 -> closed
}

func ExampleBreaker_SetSettings() {
	fc := clock.NewFake(time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC))
	b, _ := breaker.New("payments", breaker.Settings{FailureThreshold: 1, ResetTimeout: time.Minute},
		breaker.WithClock(fc))
	p, _ := b.Allow()
	b.Done(p, breaker.Failure, errors.New("HTTP 503"))
	fc.Advance(20 * time.Second)

	// A reload shortens reset_timeout: the breaker stays open, and now
	// retries 30s after it opened rather than 60s.
	if err := b.SetSettings(breaker.Settings{FailureThreshold: 1, ResetTimeout: 30 * time.Second}); err != nil {
		fmt.Println(err)
		return
	}
	s := b.Snapshot()
	fmt.Println(s.State, s.RetryAt.Sub(s.OpenedAt))
	fc.Advance(10 * time.Second)
	fmt.Println(b.State())
	// Output:
	// open 30s
	// half_open
}

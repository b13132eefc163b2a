package backoff_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vsm-relay/relay/backoff"
)

func ExamplePolicy_Start() {
	p := backoff.Policy{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: backoff.None, MaxRetries: 5}
	b := p.Start()
	for {
		d, ok := b.Next()
		if !ok {
			break
		}
		fmt.Printf("retry %d after %v\n", b.Retries(), d)
	}
	// Output:
	// retry 1 after 100ms
	// retry 2 after 200ms
	// retry 3 after 400ms
	// retry 4 after 800ms
	// retry 5 after 1s
}

func ExampleBackoff_NextAfter() {
	b := backoff.Policy{Max: 10 * time.Second, Jitter: backoff.None, MaxRetries: 3}.Start()
	retryAfter, _ := backoff.ParseRetryAfter("4", time.Now())
	d, _ := b.NextAfter(retryAfter) // the server's delay replaces the computed 100ms
	fmt.Println(d)
	d, _ = b.NextAfter(time.Hour) // but never beyond Max
	fmt.Println(d)
	d, _ = b.NextAfter(0) // without one, the curve resumes at retry 3
	fmt.Println(d)
	// Output:
	// 4s
	// 10s
	// 400ms
}

func ExamplePolicy_Delay() {
	p := backoff.Policy{Initial: time.Second, Max: 30 * time.Second}
	for n := 1; n <= 6; n++ {
		fmt.Print(p.Delay(n), " ")
	}
	fmt.Println()
	// Output: 1s 2s 4s 8s 16s 30s
}

var errUnavailable = errors.New("HTTP 503")

func ExampleRetry() {
	p := backoff.Policy{Initial: time.Millisecond, Max: 10 * time.Millisecond, Jitter: backoff.Equal, MaxRetries: 3}
	err := backoff.Retry(context.Background(), p, func(ctx context.Context, attempt int) error {
		fmt.Println("attempt", attempt)
		if attempt < 3 {
			return errUnavailable // transient: retried
		}
		return nil
	})
	fmt.Println("err:", err)
	// Output:
	// attempt 1
	// attempt 2
	// attempt 3
	// err: <nil>
}

func ExampleRetry_permanent() {
	p := backoff.Policy{Initial: time.Millisecond, MaxRetries: 3}
	err := backoff.Retry(context.Background(), p, func(ctx context.Context, attempt int) error {
		return backoff.Permanent(errors.New("HTTP 400"))
	})
	var re *backoff.Error
	if errors.As(err, &re) {
		fmt.Println(re.Attempts, backoff.IsPermanent(err))
	}
	fmt.Println(err)
	// Output:
	// 1 true
	// gave up after 1 attempt on a permanent error: HTTP 400
}

func ExampleParseRetryAfter() {
	now := time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC)
	for _, v := range []string{"120", "Sun, 29 Nov 2026 14:00:30 GMT", "Sat, 28 Nov 2026 09:00:00 GMT", "soon"} {
		d, ok := backoff.ParseRetryAfter(v, now)
		fmt.Println(d, ok)
	}
	// Output:
	// 2m0s true
	// 30s true
	// 0s true
	// 0s false
}

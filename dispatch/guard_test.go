package dispatch

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/bulkhead"
)

func testGuard(t *testing.T) (*Guard, *[]string) {
	t.Helper()
	b, err := breaker.New("svc", breaker.Settings{FailureThreshold: 2, SuccessThreshold: 1, ResetTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := bulkhead.New("pool", bulkhead.Settings{Size: 1, MaxWaiting: -1})
	if err != nil {
		t.Fatal(err)
	}
	var rejected []string
	return &Guard{Breaker: b, Bulkhead: pool, PoolWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "w"}),
		OnReject: func(b *bulkhead.Bulkhead, err error) { rejected = append(rejected, b.Name()+" "+bulkhead.Reason(err)) }}, &rejected
}

func TestGuardReportsOutcomesToTheBreaker(t *testing.T) {
	g, _ := testGuard(t)
	fail := func() (breaker.Outcome, error) { return breaker.Failure, errors.New("HTTP 503") }
	for i := 0; i < 2; i++ {
		if err := g.run(context.Background(), fail); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if st := g.Breaker.Snapshot(); st.State != breaker.Open || st.LastFailure != "HTTP 503" {
		t.Fatalf("after two failures: %+v", st)
	}
	called := false
	err := g.run(context.Background(), func() (breaker.Outcome, error) { called = true; return breaker.Success, nil })
	if !errors.Is(err, errBreakerOpen) || called {
		t.Fatalf("open breaker: err %v, called %v", err, called)
	}
	if s := g.Bulkhead.Stats(); s.Busy != 0 {
		t.Fatalf("%d slots left busy", s.Busy)
	}
}

func TestGuardPoolRejectionNeverReachesTheBreaker(t *testing.T) {
	g, rejected := testGuard(t)
	h, err := g.Bulkhead.Checkout(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Bulkhead.Checkin(h)
	var rej *poolRejection
	err = g.run(context.Background(), func() (breaker.Outcome, error) { t.Fatal("called through a full pool"); return 0, nil })
	if !errors.As(err, &rej) || err.Error() != "bulkhead pool rejected it (full)" {
		t.Fatalf("full pool: %v", err)
	}
	if len(*rejected) != 1 || (*rejected)[0] != "pool full" {
		t.Fatalf("onReject calls %q", *rejected)
	}
	if st := g.Breaker.Snapshot(); st.FailureCount != 0 {
		t.Fatalf("the breaker counted a pool rejection: %+v", st)
	}
}

func TestGuardHalfOpenProbeBusy(t *testing.T) {
	g, _ := testGuard(t)
	// One failure opens it; a nanosecond later it lets one probe through.
	b, err := breaker.New("svc", breaker.Settings{FailureThreshold: 1, SuccessThreshold: 1, ResetTimeout: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	g.Breaker = b
	g.Bulkhead, _ = bulkhead.New("pool", bulkhead.Settings{Size: 2})
	_ = g.run(context.Background(), func() (breaker.Outcome, error) { return breaker.Failure, errors.New("x") })
	time.Sleep(time.Millisecond)
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- g.run(context.Background(), func() (breaker.Outcome, error) { close(inside); <-release; return breaker.Success, nil })
	}()
	<-inside
	err = g.run(context.Background(), func() (breaker.Outcome, error) { return breaker.Success, nil })
	close(release)
	if !errors.Is(err, errProbeBusy) {
		t.Fatalf("second probe while the only probe slot is taken: %v", err)
	}
	if err := <-done; err != nil || b.State() != breaker.Closed {
		t.Fatalf("the probe: %v, breaker %s", err, b.State())
	}
}

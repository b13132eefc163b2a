package client

import (
	"context"
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/internal/testbroker"
)

const (
	painBody     = `{"signal":"pain","source":"breaker","name":"llm_api","event":"open","severity":"critical","intensity":0.8,"reason":"3 failures within 60s; last: HTTP 503","count":1,"instance":"relay-7f3a","at":"2026-11-29T14:00:00.123Z","details":{}}`
	pleasureBody = `{"signal":"pleasure","source":"breaker","name":"llm_api","event":"closed","severity":"info","intensity":0.5,"reason":"3 half-open probes succeeded","count":1,"instance":"relay-7f3a","at":"2026-11-29T14:02:00.000Z","details":{}}`
	healthBody   = `{"overall":"degraded","instance":"relay-7f3a","at":"2026-11-29T14:00:15.000Z","amqp":{"connected":true,"blocked":false},"circuit_breakers":{"llm_api":{"state":"open","failure_count":3,"success_count":0}},"bulkheads":{}}`
)

func testExchanges(t *testing.T, url string) Exchanges {
	t.Helper()
	x := Exchanges{Pain: testbroker.Unique("client.pain"), Pleasure: testbroker.Unique("client.pleasure"), Health: testbroker.Unique("client.health")}
	testbroker.CleanupExchanges(t, url, x.Pain, x.Pleasure, x.Health)
	return x
}

func publishTo(t *testing.T, url, exchange, key, body string) {
	t.Helper()
	ch := testbroker.Channel(t, url)
	if err := ch.Publish(exchange, key, false, false, amqp.Publishing{ContentType: "application/json", Body: []byte(body)}); err != nil {
		t.Fatal(err)
	}
}

func TestWatchHandsOverTypedEvents(t *testing.T) {
	url := testbroker.URL(t)
	c := dial(t, url)
	tests := []struct {
		name   string
		opts   []WatchOption
		want   []Kind
		wantFn func(t *testing.T, evs []Event)
	}{
		{"all kinds", nil, []Kind{Pain, Pleasure, Health}, func(t *testing.T, evs []Event) {
			if evs[0].Signal == nil || evs[0].Signal.Name != "llm_api" || evs[0].Signal.Severity != algedonic.Critical || evs[0].RoutingKey != "breaker.llm_api.open" {
				t.Errorf("pain event %+v", evs[0])
			}
			if evs[2].Health == nil || evs[2].Health.Overall != "degraded" || evs[2].Health.CircuitBreakers["llm_api"].State != "open" {
				t.Errorf("health event %+v", evs[2])
			}
		}},
		{"pain only", []WatchOption{WatchKinds(Pain)}, []Kind{Pain}, nil},
		{"filtered to recoveries", []WatchOption{WatchFilter(func(e Event) bool { return e.Signal != nil && e.Signal.Event == "closed" })}, []Kind{Pleasure}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := testExchanges(t, url)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			subscribed := make(chan struct{})
			var got []Event
			done := make(chan error, 1)
			opts := append([]WatchOption{WatchExchanges(x), WatchStateFunc(func(s WatchState) {
				if s == Subscribed {
					close(subscribed)
				}
			})}, tt.opts...)
			go func() {
				done <- c.Watch(ctx, func(e Event) error {
					got = append(got, e)
					if len(got) == len(tt.want) {
						return StopWatch
					}
					return nil
				}, opts...)
			}()
			select {
			case <-subscribed:
			case err := <-done:
				t.Fatalf("Watch ended before subscribing: %v", err)
			}
			publishTo(t, url, x.Pain, "breaker.llm_api.open", "not JSON")
			publishTo(t, url, x.Pain, "breaker.llm_api.open", painBody)
			publishTo(t, url, x.Pleasure, "breaker.llm_api.closed", pleasureBody)
			publishTo(t, url, x.Health, "health.relay-7f3a", healthBody)
			if err := <-done; err != nil {
				t.Fatalf("Watch = %v", err)
			}
			for i, k := range tt.want {
				if got[i].Kind != k {
					t.Fatalf("event %d is %s, want %s", i, got[i].Kind, k)
				}
			}
			if tt.wantFn != nil {
				tt.wantFn(t, got)
			}
		})
	}
}

func TestWatchReturnsTheFunctionsErrorAndTheContexts(t *testing.T) {
	url := testbroker.URL(t)
	c := dial(t, url)
	x := testExchanges(t, url)
	boom := errors.New("boom")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch := testbroker.Channel(t, url)
	if err := ch.ExchangeDeclare(x.Pain, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		// Publish until the watch has seen one.
		for ctx.Err() == nil {
			_ = ch.Publish(x.Pain, "a.b.c", false, false, amqp.Publishing{Body: []byte(painBody)})
			time.Sleep(20 * time.Millisecond)
		}
	}()
	defer func() { cancel(); <-pubDone }()
	if err := c.Watch(ctx, func(Event) error { return boom }, WatchExchanges(x)); !errors.Is(err, boom) {
		t.Fatalf("Watch = %v, want boom", err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if err := c.Watch(cctx, func(Event) error { return nil }, WatchExchanges(x)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch with a cancelled context = %v", err)
	}
	if err := c.Watch(ctx, func(Event) error { return nil }, WatchKinds("joy")); err == nil {
		t.Fatal("Watch of an unknown kind succeeded")
	}
}

func TestWatchSubscribesAgainAfterACut(t *testing.T) {
	url := testbroker.URL(t)
	px, viaProxy := newProxy(t, url)
	c := dial(t, viaProxy, WithReconnect(20*time.Millisecond, 100*time.Millisecond))
	x := testExchanges(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	states := make(chan WatchState, 8)
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(ctx, func(e Event) error { return StopWatch }, WatchExchanges(x), WatchKinds(Pain),
			WatchStateFunc(func(s WatchState) { states <- s }))
	}()
	if s := <-states; s != Subscribed {
		t.Fatalf("first state %s", s)
	}
	px.cut()
	if s := <-states; s != Lost {
		t.Fatalf("state after the cut %s, want lost", s)
	}
	if s := <-states; s != Resubscribed {
		t.Fatalf("state after lost %s, want resubscribed", s)
	}
	publishTo(t, url, x.Pain, "a.b.c", painBody)
	if err := <-done; err != nil {
		t.Fatalf("Watch = %v", err)
	}
}

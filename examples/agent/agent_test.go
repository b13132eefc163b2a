package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/algedonic"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/client"
	"github.com/vsm-relay/relay/internal/testbroker"
	"go.uber.org/goleak"
	"golang.org/x/time/rate"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHearSlowsWhileTheTargetsBreakerIsOpen(t *testing.T) {
	signal := func(kind client.Kind, source, name, event string) client.Event {
		return client.Event{Kind: kind, Signal: &algedonic.Event{Source: source, Name: name, Event: event}}
	}
	tests := []struct {
		name      string
		events    []client.Event
		wantLimit rate.Limit
		wantHurts bool
	}{
		{"nothing heard", nil, 20, false},
		{"our breaker opens", []client.Event{signal(client.Pain, "breaker", "external_api", "open")}, 0.5, true},
		{"and closes", []client.Event{signal(client.Pain, "breaker", "external_api", "open"), signal(client.Pleasure, "breaker", "external_api", "closed")}, 20, false},
		{"another breaker opens", []client.Event{signal(client.Pain, "breaker", "llm_api", "open")}, 20, false},
		{"a pool rejects", []client.Event{signal(client.Pain, "bulkhead", "external_api", "rejected")}, 20, false},
		{"a health report", []client.Event{{Kind: client.Health}}, 20, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Agent{target: "external_api", pace: rate.NewLimiter(20, 1), Normal: 20, Slow: 0.5}
			a.log = discard()
			for _, e := range tt.events {
				a.hear(e)
			}
			if a.pace.Limit() != tt.wantLimit || a.Hurts() != tt.wantHurts {
				t.Fatalf("limit %v hurts %v; want %v %v", a.pace.Limit(), a.Hurts(), tt.wantLimit, tt.wantHurts)
			}
		})
	}
}

// respondLikeTheRelay answers the queue's tasks as the relay does: the
// body echoed with 200, or an error reply for "bad".
func respondLikeTheRelay(t *testing.T, url, queue string) {
	t.Helper()
	ch := testbroker.Channel(t, url)
	if _, err := ch.QueueDeclare(queue, false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	tasks, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for d := range tasks {
			h := amqp.Table{"x-relay-status": int32(200), "x-relay-attempts": int32(1), "x-relay-target": "echo"}
			body := d.Body
			if string(d.Body) == "bad" {
				h["x-relay-status"], h["x-relay-error"] = int32(422), "HTTP 422 from echo"
				body = []byte("HTTP 422 from echo")
			}
			_ = ch.Publish("", d.ReplyTo, false, false, amqp.Publishing{CorrelationId: d.CorrelationId, Headers: h, Body: body})
		}
	})
	t.Cleanup(func() {
		_, _ = ch.QueueDelete(queue, false, false, false)
		ch.Close()
		wg.Wait()
	})
}

func newTestAgent(t *testing.T) (*Agent, string, client.Exchanges) {
	t.Helper()
	url := testbroker.URL(t)
	q := testbroker.Unique("agent.tasks")
	respondLikeTheRelay(t, url, q)
	x := client.Exchanges{Pain: testbroker.Unique("agent.pain"), Pleasure: testbroker.Unique("agent.pleasure"), Health: testbroker.Unique("agent.health")}
	testbroker.CleanupExchanges(t, url, x.Pain, x.Pleasure, x.Health)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	a, err := NewAgent(c, Settings{Queue: q, Target: "external_api", Normal: 1000, Slow: 0.5, Events: x})
	if err != nil {
		t.Fatal(err)
	}
	return a, url, x
}

func TestAgentHandsJobsToTheRelay(t *testing.T) {
	a, _, _ := newTestAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reply, err := a.Handle(ctx, `{"job":1}`)
	if err != nil || string(reply.Body) != `{"job":1}` || reply.Status != 200 {
		t.Fatalf("Handle = %+v, %v", reply, err)
	}
	_, err = a.Handle(ctx, "bad")
	var te *client.TaskError
	if !errors.As(err, &te) || te.Status != 422 {
		t.Fatalf("Handle(bad) = %v, want a TaskError with 422", err)
	}
}

func TestAgentsOwnBreakerStopsAFailingPreparation(t *testing.T) {
	a, _, _ := newTestAgent(t)
	calls := 0
	a.Prepare = func(context.Context, string) ([]byte, error) {
		calls++
		return nil, errors.New("local model down")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		if _, err := a.Handle(ctx, "x"); err == nil || !strings.Contains(err.Error(), "local model down") {
			t.Fatalf("Handle = %v", err)
		}
	}
	if _, err := a.Handle(ctx, "x"); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("fourth Handle = %v, want the agent's breaker open", err)
	}
	if calls != 3 {
		t.Fatalf("the preparation ran %d times, want 3", calls)
	}
}

func TestAgentSlowsWhenTheRelaySignalsPain(t *testing.T) {
	a, url, x := newTestAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	subscribed := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- a.Listen(ctx, func() { close(subscribed) }) }()
	<-subscribed

	ch := testbroker.Channel(t, url)
	publish := func(exchange, key, body string) {
		if err := ch.Publish(exchange, key, false, false, amqp.Publishing{ContentType: "application/json", Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(hurts bool) {
		for a.Hurts() != hurts {
			select {
			case <-ctx.Done():
				t.Fatalf("Hurts still %v", !hurts)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	publish(x.Pain, "breaker.external_api.open", `{"signal":"pain","source":"breaker","name":"external_api","event":"open","severity":"critical","intensity":0.8,"reason":"5 failures within 30s","count":1,"instance":"relay-1","at":"2026-11-29T14:00:00.000Z","details":{}}`)
	waitFor(true)
	if a.pace.Limit() != 0.5 {
		t.Fatalf("pace %v while the target hurts, want 0.5", a.pace.Limit())
	}
	publish(x.Pleasure, "breaker.external_api.closed", `{"signal":"pleasure","source":"breaker","name":"external_api","event":"closed","severity":"info","intensity":0.5,"reason":"2 probes succeeded","count":1,"instance":"relay-1","at":"2026-11-29T14:01:00.000Z","details":{}}`)
	waitFor(false)
	if a.pace.Limit() != 1000 {
		t.Fatalf("pace %v after recovery, want 1000", a.pace.Limit())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Listen = %v", err)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

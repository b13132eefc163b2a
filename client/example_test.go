package client_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vsm-relay/relay/client"
)

// The examples run against the broker the tests use; brokerURL and
// serveLikeTheRelay stand in for a real deployment's URL and relay.
var brokerURL = cmp.Or(os.Getenv("RELAY_TEST_AMQP_URL"), "amqp://guest:guest@127.0.0.1:5672/")

// serveLikeTheRelay declares queue and answers its tasks the way the
// relay does: 200 and the body upper-cased, or, for a body "bad", an
// error reply for an HTTP 422. It returns a function that stops it.
func serveLikeTheRelay(queue string) (stop func()) {
	conn, err := amqp.Dial(brokerURL)
	if err != nil {
		log.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		log.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, false, true, false, false, nil); err != nil {
		log.Fatal(err)
	}
	tasks, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for t := range tasks {
			h := amqp.Table{"x-relay-status": int32(200), "x-relay-attempts": int32(1), "x-relay-target": "echo"}
			body := []byte(strings.ToUpper(string(t.Body)))
			if string(t.Body) == "bad" {
				h["x-relay-status"] = int32(422)
				h["x-relay-error"] = "HTTP 422 from echo: unprocessable"
				body = []byte("HTTP 422 from echo: unprocessable")
			}
			_ = ch.Publish("", t.ReplyTo, false, false, amqp.Publishing{CorrelationId: t.CorrelationId, Headers: h, Body: body})
		}
	}()
	return func() {
		_, _ = ch.QueueDelete(queue, false, false, false)
		conn.Close()
		<-done
	}
}

// publishEvent publishes an event as a relay would.
func publishEvent(exchange, key, body string) {
	conn, err := amqp.Dial(brokerURL)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		log.Fatal(err)
	}
	_ = ch.Publish(exchange, key, false, false, amqp.Publishing{ContentType: "application/json", Body: []byte(body)})
}

func deleteExchanges(names ...string) {
	conn, err := amqp.Dial(brokerURL)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range names {
		_ = ch.ExchangeDelete(n, false, false)
	}
}

func ExampleClient_Call() {
	stop := serveLikeTheRelay("example.tasks.call")
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, brokerURL)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	reply, err := c.Call(ctx, "example.tasks.call", []byte("hello"), client.ContentType("text/plain"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(reply.Status, reply.Attempts, string(reply.Body))

	_, err = c.Call(ctx, "example.tasks.call", []byte("bad"))
	var te *client.TaskError
	if errors.As(err, &te) {
		fmt.Println(te.Status, te.Reason)
	}
	// Output:
	// 200 1 HELLO
	// 422 HTTP 422 from echo: unprocessable
}

func ExampleClient_Submit() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, brokerURL)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// No queue of that name: the broker hands the task back.
	err = c.Submit(ctx, "example.tasks.nowhere", []byte("lost?"), client.MessageID("job-1"))
	fmt.Println(errors.Is(err, client.ErrUnroutable))
	// Output:
	// true
}

func ExampleClient_SubmitBatch() {
	stop := serveLikeTheRelay("example.tasks.batch")
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, brokerURL)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	tasks := make([]client.Task, 100)
	for i := range tasks {
		tasks[i] = client.Task{Body: fmt.Appendf(nil, "resize %d", i), Options: []client.CallOption{client.MessageID(fmt.Sprint("img-", i))}}
	}
	fmt.Println(c.SubmitBatch(ctx, "example.tasks.batch", tasks))
	// Output:
	// <nil>
}

func ExampleClient_Watch() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, brokerURL)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	x := client.Exchanges{Pain: "example.pain", Pleasure: "example.pleasure", Health: "example.health"}
	subscribed := make(chan struct{})
	go func() {
		<-subscribed
		// What a relay publishes when a breaker opens.
		publishEvent("example.pain", "breaker.llm_api.open",
			`{"signal":"pain","source":"breaker","name":"llm_api","event":"open","severity":"critical","intensity":0.8,`+
				`"reason":"3 failures within 60s","count":1,"instance":"relay-1","at":"2026-11-29T14:00:00.123Z","details":{}}`)
	}()
	defer deleteExchanges(x.Pain, x.Pleasure, x.Health)
	err = c.Watch(ctx, func(e client.Event) error {
		fmt.Println(e.Kind, e.Signal.Source, e.Signal.Name, e.Signal.Event, e.Signal.Severity)
		return client.StopWatch
	},
		client.WatchExchanges(x),
		client.WatchKinds(client.Pain),
		client.WatchFilter(func(e client.Event) bool { return e.Signal != nil }),
		client.WatchStateFunc(func(s client.WatchState) {
			if s == client.Subscribed {
				close(subscribed)
			}
		}))
	fmt.Println(err)
	// Output:
	// pain breaker llm_api open critical
	// <nil>
}

package plain

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"
)

const brokerURL = "amqp://guest:guest@127.0.0.1:5672/"

// dialBroker connects to the local broker, or skips the test when there
// is none.
func dialBroker(t *testing.T) *amqp.Connection {
	t.Helper()
	conn, err := amqp.Dial(brokerURL)
	if err != nil {
		t.Skipf("no broker at 127.0.0.1:5672: %v", err)
	}
	return conn
}

func uniqueName(t *testing.T) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "plaintest." + hex.EncodeToString(b[:])
}

// TestRunQueueTypes runs the loop on a queue it finds declared, and on a
// classic and a quorum queue it declares itself, and has it answer one
// task each time.
func TestRunQueueTypes(t *testing.T) {
	tests := []struct {
		name      string
		queueType string // what the loop declares; "" a queue declared beforehand
		other     string // a type the queue must not have
	}{
		{"existing queue", "", ""},
		{"classic", "classic", "quorum"},
		{"quorum", "quorum", "classic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			conn := dialBroker(t)
			defer conn.Close()
			ch, err := conn.Channel()
			if err != nil {
				t.Fatal(err)
			}
			queue := uniqueName(t)
			defer func() {
				if dch, err := conn.Channel(); err == nil {
					_, _ = dch.QueueDelete(queue, false, false, false)
					dch.Close()
				}
			}()
			if tt.queueType == "" {
				if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
					t.Fatal(err)
				}
			}
			replies, err := ch.QueueDeclare("", false, true, true, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ch.Consume(replies.Name, "", true, true, false, false, nil)
			if err != nil {
				t.Fatal(err)
			}

			echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				_, _ = w.Write(body)
			}))
			defer echo.Close()

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ready := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- Run(ctx, Options{URL: brokerURL, Queue: queue, QueueType: tt.queueType, Target: echo.URL,
					Prefetch: 4, Workers: 2, Name: "test", Ready: func() { close(ready) }})
			}()
			select {
			case <-ready:
			case err := <-done:
				t.Fatalf("Run ended before it consumed: %v", err)
			}

			if err := ch.PublishWithContext(ctx, "", queue, false, false, amqp.Publishing{
				ReplyTo: replies.Name, CorrelationId: "task-1", Body: []byte("hello"),
			}); err != nil {
				t.Fatal(err)
			}
			// The deadline only bounds a hung test; nothing is timed.
			select {
			case d := <-got:
				if string(d.Body) != "hello" || d.CorrelationId != "task-1" || d.Headers["x-relay-target"] != "test" {
					t.Errorf("reply %q, correlation %q, headers %v", d.Body, d.CorrelationId, d.Headers)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("no reply")
			}

			if tt.other != "" {
				// Declaring the queue as another type must be refused.
				och, err := conn.Channel()
				if err != nil {
					t.Fatal(err)
				}
				_, err = och.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": tt.other})
				var ae *amqp.Error
				if !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed {
					t.Errorf("declaring %s as %s: err = %v, want PRECONDITION_FAILED (it is %s)", queue, tt.other, err, tt.queueType)
				}
				if err == nil {
					och.Close()
				}
			}

			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			ch.Close()
		})
	}
}

// TestRunRefusesAnotherType shows the loop failing, not consuming, when
// its queue exists as another type than it declares.
func TestRunRefusesAnotherType(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	conn := dialBroker(t)
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	queue := uniqueName(t)
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "classic"}); err != nil {
		t.Fatal(err)
	}
	defer ch.QueueDelete(queue, false, false, false)
	err = Run(context.Background(), Options{URL: brokerURL, Queue: queue, QueueType: "quorum", Target: "http://127.0.0.1:1/"})
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed {
		t.Errorf("Run on a classic queue declared as quorum: err = %v, want PRECONDITION_FAILED", err)
	}
}

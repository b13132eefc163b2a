package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// plainCaller is the request/reply loop an agent writes by hand on
// amqp091-go, with the same guarantees as client.Call: one channel
// consuming direct reply-to, persistent mandatory publishes, a map from
// correlation id to the waiting caller, a dispatcher goroutine, and
// returns failing the call. Like Call it takes the reply as the broker's
// receipt, so its channel is not in confirm mode. It skips what a
// careful hand-written loop would still need (reconnecting, cluster
// lists, cancellation removing the waiter under every race), which only
// makes it a faster yardstick.
type plainCaller struct {
	conn *amqp.Connection
	ch   *amqp.Channel

	mu      sync.Mutex
	waiting map[string]chan amqp.Delivery
	done    chan struct{}
}

func newPlainCaller(url string) (*plainCaller, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, err
	}
	replies, err := ch.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, 64))
	p := &plainCaller{conn: conn, ch: ch, waiting: map[string]chan amqp.Delivery{}, done: make(chan struct{})}
	go p.dispatch(replies, returns)
	return p, nil
}

func (p *plainCaller) dispatch(replies <-chan amqp.Delivery, returns <-chan amqp.Return) {
	defer close(p.done)
	for {
		select {
		case d, ok := <-replies:
			if !ok {
				return
			}
			p.deliver(d.CorrelationId, d)
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			p.deliver(r.CorrelationId, amqp.Delivery{CorrelationId: r.CorrelationId, Headers: amqp.Table{"returned": true}})
		}
	}
}

func (p *plainCaller) deliver(corr string, d amqp.Delivery) {
	p.mu.Lock()
	w, ok := p.waiting[corr]
	delete(p.waiting, corr)
	p.mu.Unlock()
	if ok {
		w <- d
	}
}

var errReturned = errors.New("returned")

func (p *plainCaller) call(ctx context.Context, queue string, body []byte) ([]byte, error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	corr := hex.EncodeToString(b[:])
	w := make(chan amqp.Delivery, 1)
	p.mu.Lock()
	p.waiting[corr] = w
	p.mu.Unlock()
	forget := func() {
		p.mu.Lock()
		delete(p.waiting, corr)
		p.mu.Unlock()
	}
	err := p.ch.PublishWithContext(ctx, "", queue, true, false, amqp.Publishing{
		DeliveryMode: amqp.Persistent, CorrelationId: corr, MessageId: corr, ReplyTo: "amq.rabbitmq.reply-to", Body: body,
	})
	if err != nil {
		forget()
		return nil, err
	}
	select {
	case d := <-w:
		if d.Headers["returned"] == true {
			return nil, errReturned
		}
		if _, bad := d.Headers["x-relay-error"]; bad {
			return nil, fmt.Errorf("task failed: %v", d.Headers["x-relay-error"])
		}
		return d.Body, nil
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	}
}

func (p *plainCaller) close() {
	p.conn.Close()
	<-p.done
}

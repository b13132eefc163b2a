package main

import (
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// responder stands in for the relay: it consumes the task queue and
// answers every task at once with the reply the relay sends for a 200
// (the body back, x-relay-status, x-relay-attempts, x-relay-target), so
// that the figures are the callers' and the broker's, not a downstream's.
type responder struct {
	conn *amqp.Connection
	wg   sync.WaitGroup
}

// startResponder runs n consumers of queue, each on its own channel.
func startResponder(url, queue string, n, prefetch int) (*responder, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return nil, err
	}
	r := &responder{conn: conn}
	headers := amqp.Table{"x-relay-status": int32(200), "x-relay-attempts": int32(1), "x-relay-target": "bench"}
	for range n {
		ch, err := conn.Channel()
		if err != nil {
			r.close()
			return nil, err
		}
		if err := ch.Qos(prefetch, 0, false); err != nil {
			r.close()
			return nil, err
		}
		tasks, err := ch.Consume(queue, "", false, false, false, false, nil)
		if err != nil {
			r.close()
			return nil, err
		}
		r.wg.Go(func() {
			for d := range tasks {
				_ = ch.Publish("", d.ReplyTo, false, false, amqp.Publishing{
					CorrelationId: d.CorrelationId, Headers: headers, ContentType: d.ContentType, Body: d.Body,
				})
				_ = d.Ack(false)
			}
		})
	}
	return r, nil
}

func (r *responder) close() {
	r.conn.Close()
	r.wg.Wait()
}

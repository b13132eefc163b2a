package topology

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Prefix returns a fresh name prefix for one run: "relaybench." and eight
// random hex digits.
func Prefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "relaybench." + hex.EncodeToString(b[:])
}

// Tracker declares topology on one connection and remembers it for
// Cleanup. It is safe for concurrent use.
type Tracker struct {
	conn *amqp.Connection

	mu        sync.Mutex
	queues    []string
	exchanges []string
}

// Dial connects to url for declaring and deleting.
func Dial(url string) (*Tracker, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return nil, err
	}
	return &Tracker{conn: conn}, nil
}

// Conn is the tracker's connection, for reading server properties.
func (t *Tracker) Conn() *amqp.Connection { return t.conn }

// do runs fn on a short-lived channel: a failed AMQP call closes its
// channel, and one failure must not break the next call.
func (t *Tracker) do(fn func(*amqp.Channel) error) error {
	ch, err := t.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	return fn(ch)
}

// Track records a queue created by someone else (the relay declares its
// own) so that Cleanup deletes it too.
func (t *Tracker) Track(queues ...string) {
	t.mu.Lock()
	t.queues = append(t.queues, queues...)
	t.mu.Unlock()
}

// TrackExchange records an exchange created by someone else.
func (t *Tracker) TrackExchange(names ...string) {
	t.mu.Lock()
	t.exchanges = append(t.exchanges, names...)
	t.mu.Unlock()
}

// Queue declares a durable queue.
func (t *Tracker) Queue(name string) error {
	t.Track(name)
	return t.do(func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(name, true, false, false, false, nil)
		return err
	})
}

// Exchange declares a durable topic exchange.
func (t *Tracker) Exchange(name string) error {
	t.TrackExchange(name)
	return t.do(func(ch *amqp.Channel) error {
		return ch.ExchangeDeclare(name, "topic", true, false, false, false, nil)
	})
}

// Bind binds queue to exchange with key.
func (t *Tracker) Bind(queue, exchange, key string) error {
	return t.do(func(ch *amqp.Channel) error {
		return ch.QueueBind(queue, key, exchange, false, nil)
	})
}

// Purge empties queues.
func (t *Tracker) Purge(queues ...string) error {
	return t.do(func(ch *amqp.Channel) error {
		for _, q := range queues {
			if _, err := ch.QueuePurge(q, false); err != nil {
				return fmt.Errorf("purging %s: %w", q, err)
			}
		}
		return nil
	})
}

// Depth returns how many messages queue holds ready.
func (t *Tracker) Depth(queue string) (int, error) {
	var n int
	err := t.do(func(ch *amqp.Channel) error {
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		n = q.Messages
		return err
	})
	return n, err
}

// Cleanup deletes every queue and exchange declared or tracked, and
// closes the connection. It goes on past failures and returns them all.
// A queue that is already gone is not a failure.
func (t *Tracker) Cleanup(ctx context.Context) error {
	t.mu.Lock()
	queues, exchanges := t.queues, t.exchanges
	t.queues, t.exchanges = nil, nil
	t.mu.Unlock()
	var errs []error
	seen := map[string]bool{}
	for _, q := range queues {
		if seen[q] || ctx.Err() != nil {
			continue
		}
		seen[q] = true
		err := t.do(func(ch *amqp.Channel) error {
			_, err := ch.QueueDelete(q, false, false, false)
			return err
		})
		if err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting queue %s: %w", q, err))
		}
	}
	for _, x := range exchanges {
		if seen["x:"+x] || ctx.Err() != nil {
			continue
		}
		seen["x:"+x] = true
		err := t.do(func(ch *amqp.Channel) error { return ch.ExchangeDelete(x, false, false) })
		if err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting exchange %s: %w", x, err))
		}
	}
	if ctx.Err() != nil {
		errs = append(errs, fmt.Errorf("cleanup cut short: %w", ctx.Err()))
	}
	errs = append(errs, t.conn.Close())
	return errors.Join(errs...)
}

func isNotFound(err error) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == amqp.NotFound
}
